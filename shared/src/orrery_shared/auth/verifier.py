"""Verifying Orrery access tokens: asymmetric signatures only, known issuer and audience, a little clock leeway."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jwt
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orrery_shared.auth.errors import (
    AlgorithmNotAllowed,
    BadAudience,
    BadIssuer,
    BadSignature,
    MalformedToken,
    TokenExpired,
    TokenNotYetValid,
)
from orrery_shared.auth.keys import ASYMMETRIC_ALGORITHMS, JwksKeySource, KeySource, StaticKeys
from orrery_shared.auth.principal import Principal

DEFAULT_ISSUER = "orrery-auth"
DEFAULT_AUDIENCE = "orrery"
REQUIRED_CLAIMS = ("sub", "name", "guest", "jti", "iat", "exp", "iss", "aud")
MAX_TOKEN_CHARS = 8_192


class JwtSettings(BaseSettings):
    """How a service verifies access tokens (prefix ORRERY_JWT_); the defaults match the local auth service."""

    model_config = SettingsConfigDict(env_prefix="ORRERY_JWT_", extra="ignore")

    jwks_url: str = Field(
        "http://127.0.0.1:8001/.well-known/jwks.json", description="where the auth service publishes its keys"
    )
    jwks: str | None = Field(None, description="a static JWKS document (JSON text) instead of fetching one")
    public_key: str | None = Field(None, description="static PEM public key(s) instead of fetching the JWKS")
    public_key_file: Path | None = Field(None, description="a file holding static PEM public key(s) or a JWKS")
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    algorithms: list[str] = Field(default_factory=lambda: ["EdDSA"], description="accepted JWS algorithms")
    leeway_seconds: float = Field(30.0, ge=0, le=300, description="tolerated clock skew")
    jwks_cache_seconds: float = Field(300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(10.0, ge=0, description="at most one refetch per this for unknown kids")
    jwks_timeout_seconds: float = Field(3.0, gt=0)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        refused = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused or not algorithms:
            raise ValueError(f"only asymmetric algorithms are accepted ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})")
        return algorithms

    def key_source(self, client: httpx.AsyncClient | None = None) -> KeySource:
        """Static keys when any are configured, else the JWKS endpoint."""
        if self.jwks:
            return StaticKeys.from_jwks(self.jwks)
        if self.public_key:
            return StaticKeys.from_pem(self.public_key)
        if self.public_key_file:
            text = self.public_key_file.read_text()
            return StaticKeys.from_jwks(text) if text.lstrip().startswith("{") else StaticKeys.from_pem(text)
        return JwksKeySource(
            self.jwks_url,
            client=client,
            algorithms=self.algorithms,
            cache_seconds=self.jwks_cache_seconds,
            min_refresh_seconds=self.jwks_min_refresh_seconds,
            timeout=self.jwks_timeout_seconds,
        )


class JwtVerifier:
    """Turns an access token into a Principal, or raises a TokenError subclass saying why not."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str | Sequence[str] = DEFAULT_AUDIENCE,
        algorithms: Sequence[str] = ("EdDSA",),
        leeway: float = 30.0,
    ) -> None:
        refused = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused or not algorithms:
            raise ValueError(f"refusing non-asymmetric JWS algorithms: {refused or 'none given'}")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience if isinstance(audience, str) else list(audience)
        self.algorithms = frozenset(algorithms)
        self.leeway = leeway
        self._jwt = jwt.PyJWT({"require": list(REQUIRED_CLAIMS)})

    @classmethod
    def from_settings(cls, settings: JwtSettings | None = None, client: httpx.AsyncClient | None = None) -> JwtVerifier:
        """A verifier configured from ORRERY_JWT_* (fetching the JWKS with `client` if given)."""
        settings = settings or JwtSettings()
        return cls(
            settings.key_source(client),
            issuer=settings.issuer,
            audience=settings.audience,
            algorithms=settings.algorithms,
            leeway=settings.leeway_seconds,
        )

    async def verify(self, token: str) -> Principal:
        """The principal of a valid access token; raises a TokenError subclass otherwise."""
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AlgorithmNotAllowed(f"tokens signed with {str(alg)[:20]!r} are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise MalformedToken("the token header names no key (kid)")
        key = await self.keys.get(kid)
        if key.algorithm_name != alg:
            raise AlgorithmNotAllowed("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise BadSignature("the token's signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise BadAudience("the token is meant for another audience") from None
        except jwt.InvalidIssuerError:
            raise BadIssuer("the token comes from an unexpected issuer") from None
        except jwt.ImmatureSignatureError:
            raise TokenNotYetValid("the token is not valid yet") from None
        except jwt.InvalidAlgorithmError:
            raise AlgorithmNotAllowed("the token's algorithm is not accepted") from None
        except jwt.InvalidTokenError as error:
            raise MalformedToken(f"the token is malformed: {error}") from None
        return _principal(claims)

    async def aclose(self) -> None:
        """Release the key source's connections."""
        await self.keys.aclose()


def _unverified_header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise MalformedToken("not a compact JWS")
    segment = token[: token.index(".")]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise MalformedToken("the token header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise MalformedToken("the token header is not a JSON object")
    return header


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        user_id = UUID(str(claims["sub"]))
    except ValueError:
        raise MalformedToken("the token's subject is not a user id") from None
    name, guest = claims["name"], claims["guest"]
    if not isinstance(name, str) or not isinstance(guest, bool):
        raise MalformedToken("the token's name or guest claim has the wrong type")
    return Principal(user_id=user_id, name=name, is_guest=guest, claims=claims)
