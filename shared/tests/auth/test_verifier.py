"""Access tokens are accepted only when signed by a known asymmetric key for this issuer and audience."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI

from orrery_shared.auth import (
    CurrentPrincipal,
    JwtSettings,
    JwtVerifier,
    OptionalPrincipal,
    StaticKeys,
    TokenExpired,
    install_verifier,
    jwk_thumbprint,
    public_jwk,
)
from orrery_shared.http import install_error_handlers

from .conftest import AUDIENCE, ISSUER, SigningKey, Tokens


def verifier_for(*keys: SigningKey, **options: Any) -> JwtVerifier:
    return JwtVerifier(
        StaticKeys.from_jwks({"keys": [k.jwk for k in keys]}), issuer=ISSUER, audience=AUDIENCE, **options
    )


@pytest.fixture
async def client(signing_key: SigningKey) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    install_verifier(app, verifier_for(signing_key))

    @app.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"user_id": str(principal.user_id), "name": principal.name, "guest": principal.is_guest}

    @app.get("/maybe")
    async def maybe(principal: OptionalPrincipal) -> dict[str, Any]:
        return {"user_id": str(principal.user_id) if principal else None}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def refusal(client: httpx.AsyncClient, token: str) -> str:
    response = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    code: str = response.json()["error"]["code"]
    assert response.json()["error"]["message"]
    return code


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


async def test_a_valid_token_yields_the_principal_it_names(client: httpx.AsyncClient, tokens: Tokens) -> None:
    user_id = uuid.uuid4()
    token = tokens.sign(sub=str(user_id), name="Quib", guest=True)
    response = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"user_id": str(user_id), "name": "Quib", "guest": True}


async def test_the_principal_carries_every_verified_claim(signing_key: SigningKey, tokens: Tokens) -> None:
    principal = await verifier_for(signing_key).verify(tokens.sign(jti="abc123"))
    assert principal.token_id == "abc123"
    assert principal.claims["iss"] == ISSUER
    assert principal.expires_at.timestamp() == principal.claims["exp"]


async def test_an_expired_token_is_refused_as_expired(client: httpx.AsyncClient, tokens: Tokens) -> None:
    now = int(time.time())
    assert await refusal(client, tokens.sign(iat=now - 1000, exp=now - 120)) == "expired"


async def test_a_token_expired_within_the_clock_leeway_is_still_accepted(
    signing_key: SigningKey, tokens: Tokens
) -> None:
    now = int(time.time())
    token = tokens.sign(iat=now - 900, exp=now - 10)
    assert (await verifier_for(signing_key, leeway=30).verify(token)).name == "Zorblax"
    with pytest.raises(TokenExpired):
        await verifier_for(signing_key, leeway=0).verify(token)


async def test_a_token_issued_in_the_future_is_refused_as_not_yet_valid(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    now = int(time.time())
    assert await refusal(client, tokens.sign(iat=now + 600, exp=now + 1500)) == "not_yet_valid"


async def test_a_token_signed_by_another_key_under_a_known_kid_is_refused_as_bad_signature(
    client: httpx.AsyncClient, tokens: Tokens, signing_key: SigningKey
) -> None:
    assert await refusal(client, tokens.sign(key=SigningKey(), kid=signing_key.kid)) == "bad_signature"


async def test_a_token_whose_claims_were_altered_after_signing_is_refused_as_bad_signature(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    header, _, signature = tokens.sign(guest=True).split(".")
    forged = unsigned({}, tokens.claims(guest=False)).split(".")[1]
    assert await refusal(client, f"{header}.{forged}.{signature}") == "bad_signature"


async def test_an_unsigned_alg_none_token_is_refused_as_alg_not_allowed(
    client: httpx.AsyncClient, tokens: Tokens, signing_key: SigningKey
) -> None:
    token = unsigned({"alg": "none", "typ": "JWT", "kid": signing_key.kid}, tokens.claims())
    assert await refusal(client, token) == "alg_not_allowed"


async def test_an_hs256_token_keyed_with_the_public_key_is_refused_as_alg_not_allowed(
    client: httpx.AsyncClient, tokens: Tokens, signing_key: SigningKey
) -> None:
    # The classic confusion attack: the public key, which anyone can fetch, used as an HMAC secret.
    public_pem = signing_key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": signing_key.kid}
    signing_input = unsigned(header, tokens.claims()).rsplit(".", 1)[0]
    signature = jwt.get_algorithm_by_name("HS256").sign(signing_input.encode(), public_pem)
    token = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert await refusal(client, token) == "alg_not_allowed"


async def test_a_token_for_another_audience_is_refused_as_bad_audience(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    assert await refusal(client, tokens.sign(aud="another-product")) == "bad_audience"


async def test_a_token_from_another_issuer_is_refused_as_bad_issuer(client: httpx.AsyncClient, tokens: Tokens) -> None:
    assert await refusal(client, tokens.sign(iss="https://evil.example")) == "bad_issuer"


async def test_a_token_signed_with_an_unknown_kid_is_refused_as_unknown_kid(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    assert await refusal(client, tokens.sign(key=SigningKey())) == "unknown_kid"


async def test_a_token_without_a_kid_is_refused_as_malformed(client: httpx.AsyncClient, tokens: Tokens) -> None:
    token = jwt.encode(tokens.claims(), tokens.key.private, algorithm="EdDSA")
    assert await refusal(client, token) == "malformed"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "e30.e30.", "x" * 10_000, "eyJhbGciOiJFZERTQSJ9.e30"])
async def test_garbage_is_refused_as_malformed(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"malformed", "alg_not_allowed"}


async def test_a_token_missing_a_required_claim_is_refused_as_malformed(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    assert await refusal(client, tokens.sign(jti=None)) == "malformed"


async def test_a_token_whose_subject_is_not_a_user_id_is_refused_as_malformed(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    assert await refusal(client, tokens.sign(sub="admin")) == "malformed"


async def test_a_request_without_a_bearer_token_is_refused_as_missing_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


async def test_a_basic_authorization_header_is_refused_as_malformed(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "malformed"


async def test_the_optional_dependency_is_none_without_a_header_but_still_refuses_a_bad_token(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    assert (await client.get("/maybe")).json() == {"user_id": None}
    response = await client.get("/maybe", headers={"Authorization": f"Bearer {tokens.sign(aud='x')}"})
    assert response.status_code == 401


async def test_an_rs256_token_presented_under_an_eddsa_key_is_refused_even_when_rs256_is_allowed(
    signing_key: SigningKey, tokens: Tokens
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(tokens.claims(), rsa_key, algorithm="RS256", headers={"kid": signing_key.kid})
    verifier = verifier_for(signing_key, algorithms=("EdDSA", "RS256"))
    with pytest.raises(Exception) as caught:
        await verifier.verify(token)
    assert getattr(caught.value, "code", None) == "alg_not_allowed"


async def test_rs256_tokens_verify_when_configured(tokens: Tokens) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = public_jwk(rsa_key)["kid"]
    token = jwt.encode(tokens.claims(name="Rsa"), rsa_key, algorithm="RS256", headers={"kid": kid})
    keys = StaticKeys.from_jwks({"keys": [public_jwk(rsa_key)]})
    principal = await JwtVerifier(keys, algorithms=("RS256",)).verify(token)
    assert principal.name == "Rsa"


@pytest.mark.parametrize("algorithm", ["HS256", "none", "HS512"])
def test_a_verifier_cannot_be_configured_with_a_symmetric_or_empty_algorithm(
    signing_key: SigningKey, algorithm: str
) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        verifier_for(signing_key, algorithms=(algorithm,))
    with pytest.raises(ValueError, match="asymmetric"):
        JwtSettings(algorithms=[algorithm])


async def test_a_symmetric_key_in_a_jwks_is_ignored(signing_key: SigningKey) -> None:
    keys = StaticKeys.from_jwks({"keys": [signing_key.jwk, {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"}]})
    assert keys.kids == [signing_key.kid]


async def test_static_pem_keys_are_known_by_the_thumbprint_the_issuer_uses(
    signing_key: SigningKey, tokens: Tokens
) -> None:
    pem = signing_key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    other = SigningKey().private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    keys = StaticKeys.from_pem(pem + other)
    assert signing_key.kid in keys.kids and len(keys.kids) == 2
    assert signing_key.kid == jwk_thumbprint(signing_key.jwk)
    principal = await JwtVerifier(keys).verify(tokens.sign())
    assert principal.name == "Zorblax"


async def test_settings_with_a_static_public_key_build_a_verifier_that_never_fetches(
    signing_key: SigningKey, tokens: Tokens
) -> None:
    pem = signing_key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    verifier = JwtVerifier.from_settings(JwtSettings(public_key=pem, jwks_url="http://127.0.0.1:9/unreachable"))
    assert isinstance(verifier.keys, StaticKeys)
    assert (await verifier.verify(tokens.sign())).name == "Zorblax"
