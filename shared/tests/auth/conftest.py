"""Keys, a token factory, and a real JWKS endpoint on a loopback port for the verifier's tests."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from orrery_shared.auth import public_jwk

ISSUER = "orrery-auth"
AUDIENCE = "orrery"


@dataclass
class SigningKey:
    private: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    @property
    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.private)

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])


class Tokens:
    """Signs access tokens the way the auth service does, with any claim or header overridden."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "sub": str(uuid.uuid4()),
            "name": "Zorblax",
            "guest": False,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 900,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, key: SigningKey | None = None, kid: str | None = None, **overrides: Any) -> str:
        key = key or self.key
        return jwt.encode(self.claims(**overrides), key.private, algorithm="EdDSA", headers={"kid": kid or key.kid})


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey()


@pytest.fixture
def tokens(signing_key: SigningKey) -> Tokens:
    return Tokens(signing_key)


@dataclass
class JwksServer:
    """A JWKS endpoint whose keys a test changes, counting how often it is fetched."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    failing: bool = False


@pytest.fixture(scope="session")
async def _jwks_server() -> AsyncIterator[JwksServer]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = JwksServer(url=f"http://127.0.0.1:{port}/.well-known/jwks.json")
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        state.fetches += 1
        if state.failing:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"keys": state.keys})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield state
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def jwks_server(_jwks_server: JwksServer) -> JwksServer:
    _jwks_server.keys = []
    _jwks_server.fetches = 0
    _jwks_server.failing = False
    return _jwks_server
