"""Signing keys: the current one signs, the previous one still verifies, both are published as a JWKS.

Keys come from settings (PEM text or files). In development, with none configured, a key is generated once
and kept under `.orrery/auth-keys/` so restarts do not sign everyone out.

`python -m orrery_auth.keys generate` prints a new private key; `jwks` prints the public JWKS of the configured
keys (for services that prefer static keys); `rotate-dev` rotates the development keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from orrery_auth.domain import User
from orrery_auth.settings import AuthSettings, load
from orrery_shared.auth import StaticKeys, algorithm_for_key, load_pem_keys, public_jwk
from orrery_shared.auth.keys import PrivateKey, PublicKey
from orrery_shared.settings import Environment

log = logging.getLogger(__name__)

CURRENT_FILE = "current.pem"
PREVIOUS_FILE = "previous.pem"


@dataclass(frozen=True)
class KeyRing:
    """The signing key and the keys tokens may still be signed with."""

    signing: PrivateKey
    previous: PublicKey | None = None

    @property
    def kid(self) -> str:
        return str(public_jwk(self.signing)["kid"])

    @property
    def algorithm(self) -> str:
        return algorithm_for_key(self.signing)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: current key first."""
        keys = [public_jwk(self.signing)]
        if self.previous is not None:
            previous = public_jwk(self.previous)
            if previous["kid"] != keys[0]["kid"]:
                keys.append(previous)
        return {"keys": keys}

    def verification_keys(self) -> StaticKeys:
        """The same keys as a verifier's key source (this service verifies its own tokens without HTTP)."""
        return StaticKeys.from_jwks(self.jwks())

    def algorithms(self) -> list[str]:
        return sorted({str(k["alg"]) for k in self.jwks()["keys"]})


class AccessTokens:
    """Issues short-lived access JWTs for users."""

    def __init__(self, keys: KeyRing, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._headers = {"kid": keys.kid, "typ": "JWT"}

    def issue(self, user: User) -> str:
        """A signed token naming `user` (sub, name, guest), valid for the configured TTL."""
        now = int(time.time())
        claims = {
            "sub": str(user.id),
            "name": user.username,
            "guest": user.is_guest,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + self.ttl_seconds,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return jwt.encode(claims, self.keys.signing, algorithm=self.keys.algorithm, headers=self._headers)


def generate_private_key_pem() -> bytes:
    """A new Ed25519 private key, PKCS#8 PEM."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _private_key(pem: bytes, source: str) -> PrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{source}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, PrivateKey):
        raise ValueError(f"{source}: unsupported key type {type(key).__name__}")
    algorithm_for_key(key)
    return key


def _public_key(pem: bytes, source: str) -> PublicKey:
    try:
        keys = load_pem_keys(pem)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{source}: not a PEM key ({error})") from None
    if len(keys) != 1:
        raise ValueError(f"{source}: expected one key, found {len(keys)}")
    return keys[0]


def _write_new_key(path: Path) -> None:
    """Create `path` with a fresh key unless another process already did (replicas may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".new-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(generate_private_key_pem())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            log.info("generated a development signing key", extra={"path": str(path)})
    finally:
        os.unlink(tmp)


def load_key_ring(settings: AuthSettings) -> KeyRing:
    """The configured keys; in development without any, the persisted (or newly generated) dev keys."""
    previous: PublicKey | None = None
    if settings.previous_key is not None:
        previous = _public_key(settings.previous_key.get_secret_value().encode(), "ORRERY_AUTH_PREVIOUS_KEY")
    elif settings.previous_key_file is not None:
        previous = _public_key(settings.previous_key_file.read_bytes(), "ORRERY_AUTH_PREVIOUS_KEY_FILE")
    if settings.signing_key is not None:
        signing = _private_key(settings.signing_key.get_secret_value().encode(), "ORRERY_AUTH_SIGNING_KEY")
        return KeyRing(signing, previous)
    if settings.signing_key_file is not None:
        signing = _private_key(settings.signing_key_file.read_bytes(), "ORRERY_AUTH_SIGNING_KEY_FILE")
        return KeyRing(signing, previous)
    if settings.environment is Environment.PROD:
        raise ValueError("no signing key configured")
    current = settings.dev_key_dir / CURRENT_FILE
    if not current.exists():
        _write_new_key(current)
    signing = _private_key(current.read_bytes(), str(current))
    dev_previous = settings.dev_key_dir / PREVIOUS_FILE
    if previous is None and dev_previous.exists():
        previous = _public_key(dev_previous.read_bytes(), str(dev_previous))
    return KeyRing(signing, previous)


def rotate_dev_keys(key_dir: Path) -> None:
    """Make the current development key the previous one and generate a new current key."""
    current = key_dir / CURRENT_FILE
    if current.exists():
        os.replace(current, key_dir / PREVIOUS_FILE)
    _write_new_key(current)


def main(argv: Sequence[str]) -> int:
    usage = "usage: python -m orrery_auth.keys generate | jwks | rotate-dev"
    if len(argv) != 1 or argv[0] not in {"generate", "jwks", "rotate-dev"}:
        print(usage, file=sys.stderr)
        return 2
    if argv[0] == "generate":
        sys.stdout.write(generate_private_key_pem().decode())
        return 0
    settings = load()
    if argv[0] == "rotate-dev":
        if settings.environment is Environment.PROD:
            print("rotate-dev only rotates development keys; see docs/auth.md for production", file=sys.stderr)
            return 2
        rotate_dev_keys(settings.dev_key_dir)
        print(f"rotated the development keys in {settings.dev_key_dir}; restart the auth service")
        return 0
    print(json.dumps(load_key_ring(settings).jwks(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
