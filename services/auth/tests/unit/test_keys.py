"""Signing keys: configured PEMs, or development keys generated once and kept; current and previous published."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from orrery_auth.domain import User
from orrery_auth.keys import AccessTokens, generate_private_key_pem, load_key_ring, main, rotate_dev_keys
from orrery_auth.settings import AuthSettings
from orrery_shared.auth import JwtVerifier


def settings(tmp_path: Path, **values: object) -> AuthSettings:
    return AuthSettings(dev_key_dir=tmp_path / "keys", **values)  # type: ignore[arg-type]


def test_development_keys_are_generated_once_privately_and_reused(tmp_path: Path) -> None:
    first = load_key_ring(settings(tmp_path))
    again = load_key_ring(settings(tmp_path))
    assert first.kid == again.kid
    pem = tmp_path / "keys" / "current.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert first.algorithm == "EdDSA"


def test_rotating_development_keys_keeps_the_old_key_published_as_previous(tmp_path: Path) -> None:
    old = load_key_ring(settings(tmp_path))
    rotate_dev_keys(tmp_path / "keys")
    new = load_key_ring(settings(tmp_path))
    assert new.kid != old.kid
    assert [k["kid"] for k in new.jwks()["keys"]] == [new.kid, old.kid]


def test_a_configured_key_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    pem = generate_private_key_pem().decode()
    ring = load_key_ring(settings(tmp_path, signing_key=pem))
    assert not (tmp_path / "keys").exists()
    assert ring.kid == load_key_ring(settings(tmp_path, signing_key=pem)).kid


def test_keys_can_be_read_from_files(tmp_path: Path) -> None:
    current, previous = tmp_path / "current.pem", tmp_path / "previous.pem"
    current.write_bytes(generate_private_key_pem())
    previous.write_bytes(generate_private_key_pem())
    ring = load_key_ring(settings(tmp_path, signing_key_file=current, previous_key_file=previous))
    assert len(ring.jwks()["keys"]) == 2


def test_an_rsa_key_signs_rs256(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    ring = load_key_ring(settings(tmp_path, signing_key=pem))
    assert ring.algorithm == "RS256"
    assert ring.jwks()["keys"][0]["kty"] == "RSA"


def test_a_garbage_signing_key_is_reported_by_its_setting_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ORRERY_AUTH_SIGNING_KEY"):
        load_key_ring(settings(tmp_path, signing_key="not a key"))


async def test_issued_tokens_verify_with_the_shared_verifier_over_the_published_keys(tmp_path: Path) -> None:
    ring = load_key_ring(settings(tmp_path))
    user = User(id=uuid.uuid4(), username="Zorg", email=None, is_guest=True, created_at=datetime.now(UTC))
    token = AccessTokens(ring, issuer="orrery-auth", audience="orrery", ttl_seconds=900).issue(user)
    assert jwt.get_unverified_header(token)["kid"] == ring.kid
    principal = await JwtVerifier(ring.verification_keys()).verify(token)
    assert (principal.user_id, principal.name, principal.is_guest) == (user.id, "Zorg", True)


def test_the_keys_command_prints_a_new_private_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate"]) == 0
    assert capsys.readouterr().out.startswith("-----BEGIN PRIVATE KEY-----")
    assert main(["bogus"]) == 2
