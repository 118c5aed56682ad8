"""The gateway's edge: an anonymous request under /api is refused before any of its body is read, and a
signed-in caller's body is capped."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi import FastAPI, Request
from starlette.types import Message

from orrery_gateway.edge import AuthenticateFirst
from orrery_shared.auth import JwtVerifier, StaticKeys
from orrery_shared.http import BodyLimit, install_error_handlers
from tests.support.tokens import TokenMinter

LIMIT = 10_000


def app_for(minter: TokenMinter, erased: frozenset[UUID] = frozenset(), redis_down: bool = False) -> FastAPI:
    app = FastAPI()

    async def revoked(user_id: UUID) -> bool:
        if redis_down:
            raise ConnectionError("redis is down")
        return user_id in erased

    install_error_handlers(app)

    @app.post("/api/chat")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"bytes": len(body), "user": str(request.state.principal.user_id)}

    @app.post("/api/auth/guest")
    async def guest() -> dict[str, str]:
        return {"status": "open"}

    app.add_middleware(BodyLimit, max_bytes=LIMIT)
    app.add_middleware(AuthenticateFirst, verifier=JwtVerifier(StaticKeys.from_jwks(minter.jwks)), revoked=revoked)
    return app


async def call(app: FastAPI, path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, int]:
    """Send a streamed body; returns the status and how many body chunks the app asked for."""
    asked = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        if asked > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[asked - 1], "more_body": asked < len(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], asked


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
async def test_an_anonymous_body_is_refused_before_a_byte_of_it_is_read(headers: dict[str, str]) -> None:
    minter = TokenMinter()
    huge = [b"x" * 1_000_000] * 100  # 100 MB, were it read
    status, asked = await call(app_for(minter), "/api/chat", headers, huge)
    assert status == 401
    assert asked == 0


async def test_a_signed_in_callers_body_is_capped_while_it_streams_in() -> None:
    minter = TokenMinter()
    headers = minter.headers(uuid4())
    status, asked = await call(app_for(minter), "/api/chat", headers, [b"x" * 4_000] * 100)
    assert status == 413
    assert asked <= 3  # stopped at the limit, not after the whole body

    status, _ = await call(app_for(minter), "/api/chat", headers, [b"x" * 4_000])
    assert status == 200


async def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    minter = TokenMinter()
    headers = {**minter.headers(uuid4()), "Content-Length": str(LIMIT + 1)}
    status, asked = await call(app_for(minter), "/api/chat", headers, [b"x" * (LIMIT + 1)])
    assert (status, asked) == (413, 0)


async def test_sign_in_needs_no_token() -> None:
    status, _ = await call(app_for(TokenMinter()), "/api/auth/guest", {}, [b""])
    assert status == 200


async def test_the_token_of_an_erased_user_is_refused_and_others_pass() -> None:
    minter = TokenMinter()
    erased, kept = uuid4(), uuid4()
    app = app_for(minter, erased=frozenset({erased}))
    assert (await call(app, "/api/chat", minter.headers(erased), [b"{}"]))[0] == 401
    assert (await call(app, "/api/chat", minter.headers(kept), [b"{}"]))[0] == 200


async def test_a_token_that_cannot_be_checked_for_erasure_is_refused_with_503_not_let_in() -> None:
    minter = TokenMinter()
    status, asked = await call(app_for(minter, redis_down=True), "/api/chat", minter.headers(uuid4()), [b"{}"])
    assert (status, asked) == (503, 0)
