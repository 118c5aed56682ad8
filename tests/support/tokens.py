"""Access tokens for tests of services that verify JWTs: a throwaway Ed25519 key and a static JWKS."""

from __future__ import annotations

import json
import time
from uuid import UUID, uuid4

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orrery_shared.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER, public_jwk


class TokenMinter:
    """Signs tokens the way the auth service does, with a key the tests own."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.jwk = public_jwk(self.key)
        self.kid = str(self.jwk["kid"])

    @property
    def jwks(self) -> str:
        return json.dumps({"keys": [self.jwk]})

    def token(self, user_id: UUID | None = None, *, name: str = "tester", guest: bool = False, ttl: int = 900) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id or uuid4()),
            "name": name,
            "guest": guest,
            "jti": uuid4().hex,
            "iat": now,
            "exp": now + ttl,
            "iss": DEFAULT_ISSUER,
            "aud": DEFAULT_AUDIENCE,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    def headers(self, user_id: UUID, **kwargs: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, **kwargs)}"}  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def token_minter() -> TokenMinter:
    """A signing key; a service under test trusts it when given `minter.jwks` as ORRERY_JWT_JWKS."""
    return TokenMinter()
