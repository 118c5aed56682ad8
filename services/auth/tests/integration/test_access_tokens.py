"""Access tokens: EdDSA JWTs with the documented claims, verifiable from the published JWKS, refused when forged."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from orrery_auth.keys import generate_private_key_pem
from orrery_shared.auth import JwtSettings, JwtVerifier, public_jwk
from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import RunningService, Schema, make_settings, running, sign_in, unique_email

pytestmark = pytest.mark.integration


def service_key(key_dir: Path) -> ed25519.Ed25519PrivateKey:
    key = load_pem_private_key((key_dir / "current.pem").read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key


def claims(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {
        "sub": user_id,
        "name": "Ada",
        "guest": False,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 900,
        "iss": "orrery-auth",
        "aud": "orrery",
    }
    values.update(overrides)
    return values


def signed(key_dir: Path, user_id: str, **overrides: Any) -> str:
    """A token signed with the service's own key, with claims overridden."""
    key = service_key(key_dir)
    return jwt.encode(claims(user_id, **overrides), key, algorithm="EdDSA", headers={"kid": public_jwk(key)["kid"]})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def me_refusal(client: httpx.AsyncClient, token: str) -> str:
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
async def account(client: httpx.AsyncClient, smtp_mailbox: SmtpServer) -> dict[str, Any]:
    return await sign_in(client, smtp_mailbox, unique_email("claims"), "Ada")


async def test_an_access_token_is_an_eddsa_jwt_with_kid_and_the_documented_claims(
    client: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    token = account["access_token"]
    header = jwt.get_unverified_header(token)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert header["alg"] == "EdDSA"
    assert header["kid"] == jwks["keys"][0]["kid"]
    key = jwt.PyJWK(jwks["keys"][0])
    decoded = jwt.decode(token, key, algorithms=["EdDSA"], audience="orrery", issuer="orrery-auth")
    assert set(decoded) == {"sub", "name", "guest", "jti", "iat", "exp", "iss", "aud"}
    assert decoded["sub"] == account["user"]["id"]
    assert decoded["name"] == "Ada"
    assert decoded["guest"] is False
    assert decoded["exp"] - decoded["iat"] == 900


async def test_the_jwks_is_public_cacheable_and_holds_no_private_material(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    (key,) = response.json()["keys"]
    assert {k: key[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
    }
    assert "d" not in key


async def test_the_shared_verifier_fetching_the_real_jwks_accepts_the_services_tokens(
    auth_service: RunningService, account: dict[str, Any]
) -> None:
    verifier = JwtVerifier.from_settings(JwtSettings(jwks_url=f"{auth_service.base_url}/.well-known/jwks.json"))
    try:
        principal = await verifier.verify(account["access_token"])
    finally:
        await verifier.aclose()
    assert str(principal.user_id) == account["user"]["id"]
    assert principal.name == "Ada"
    assert principal.is_guest is False


async def test_me_refuses_an_expired_token_with_401_expired(
    client: httpx.AsyncClient, key_dir: Path, account: dict[str, Any]
) -> None:
    now = int(time.time())
    token = signed(key_dir, account["user"]["id"], iat=now - 2000, exp=now - 600)
    assert await me_refusal(client, token) == "expired"


async def test_me_refuses_a_token_with_a_wrong_signature_with_401_bad_signature(
    client: httpx.AsyncClient, key_dir: Path, account: dict[str, Any]
) -> None:
    impostor = ed25519.Ed25519PrivateKey.generate()
    kid = public_jwk(service_key(key_dir))["kid"]
    token = jwt.encode(claims(account["user"]["id"]), impostor, algorithm="EdDSA", headers={"kid": kid})
    assert await me_refusal(client, token) == "bad_signature"


async def test_me_refuses_an_alg_none_token_with_401_alg_not_allowed(
    client: httpx.AsyncClient, key_dir: Path, account: dict[str, Any]
) -> None:
    kid = public_jwk(service_key(key_dir))["kid"]
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    token = f"{header}.{b64(json.dumps(claims(account['user']['id'])).encode())}."
    assert await me_refusal(client, token) == "alg_not_allowed"


async def test_me_refuses_hs256_signed_with_the_public_key_with_401_alg_not_allowed(
    client: httpx.AsyncClient, key_dir: Path, account: dict[str, Any]
) -> None:
    key = service_key(key_dir)
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": public_jwk(key)["kid"]}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims(account['user']['id'])).encode())}"
    signature = jwt.get_algorithm_by_name("HS256").sign(signing_input.encode(), public_pem)
    assert await me_refusal(client, f"{signing_input}.{b64(signature)}") == "alg_not_allowed"


async def test_me_refuses_a_token_for_another_audience_with_401_bad_audience(
    client: httpx.AsyncClient, key_dir: Path, account: dict[str, Any]
) -> None:
    token = signed(key_dir, account["user"]["id"], aud="elsewhere")
    assert await me_refusal(client, token) == "bad_audience"


async def test_me_refuses_a_token_from_another_issuer_with_401_bad_issuer(
    client: httpx.AsyncClient, key_dir: Path, account: dict[str, Any]
) -> None:
    token = signed(key_dir, account["user"]["id"], iss="someone-else")
    assert await me_refusal(client, token) == "bad_issuer"


async def test_me_refuses_a_token_with_an_unknown_kid_with_401_unknown_kid(
    client: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    stranger = ed25519.Ed25519PrivateKey.generate()
    token = jwt.encode(
        claims(account["user"]["id"]), stranger, algorithm="EdDSA", headers={"kid": public_jwk(stranger)["kid"]}
    )
    assert await me_refusal(client, token) == "unknown_kid"


async def test_tokens_signed_with_the_previous_key_stay_valid_after_a_rotation(
    infra: Infra, auth_schema: Schema, smtp_mailbox: SmtpServer, tmp_path: Path
) -> None:
    old_pem, new_pem = generate_private_key_pem().decode(), generate_private_key_pem().decode()
    before = make_settings(infra, auth_schema, smtp_mailbox, tmp_path, signing_key=old_pem)
    after = make_settings(infra, auth_schema, smtp_mailbox, tmp_path, signing_key=new_pem, previous_key=old_pem)
    async with running(before) as old_service, httpx.AsyncClient(base_url=old_service.base_url) as http:
        issued_before = await sign_in(http, smtp_mailbox, unique_email("rotation"))
    async with running(after) as new_service, httpx.AsyncClient(base_url=new_service.base_url) as http:
        kids = [k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]]
        assert kids[1] == jwt.get_unverified_header(issued_before["access_token"])["kid"]
        old_token = await http.get("/me", headers={"Authorization": f"Bearer {issued_before['access_token']}"})
        assert old_token.status_code == 200
        refreshed = await http.post("/auth/refresh", json={"refresh_token": issued_before["refresh_token"]})
        assert refreshed.status_code == 200
        assert jwt.get_unverified_header(refreshed.json()["access_token"])["kid"] == kids[0]
