"""The socket paths are served straight from the app's outermost ASGI callable, past the HTTP middleware stack."""

from __future__ import annotations

import logging
from uuid import UUID, uuid4

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from orrery_gateway import ws
from orrery_gateway.app import create_app
from orrery_shared.auth import Principal
from tests.support.tokens import TokenMinter


@pytest.fixture
def minter(monkeypatch: pytest.MonkeyPatch) -> TokenMinter:
    minter = TokenMinter()
    monkeypatch.setenv("ORRERY_JWT_JWKS", minter.jwks)
    return minter


@pytest.fixture
def app(minter: TokenMinter) -> FastAPI:
    return create_app()


def client(app: FastAPI) -> TestClient:
    return TestClient(app)  # not entered: no lifespan, sockets need only the verifier and the hub


class SeenScopes:
    """A pure ASGI middleware recording the type of every connection that passes through the stack."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope["type"])
        await self.app(scope, receive, send)


@pytest.mark.parametrize("path", ws.PATHS)
def test_a_socket_authenticates_and_is_served_without_passing_through_the_middleware_stack(
    app: FastAPI, minter: TokenMinter, path: str
) -> None:
    seen: list[str] = []
    app.add_middleware(SeenScopes, seen=seen)
    with client(app).websocket_connect(path, subprotocols=["bearer", minter.token()]) as socket:
        assert socket.accepted_subprotocol == "bearer"
        socket.send_json({"type": "ping"})
        assert socket.receive_json() == {"type": "pong"}
    assert seen == []
    assert client(app).get("/healthz").status_code == 200
    assert seen == ["http"]  # HTTP still goes through it


def test_a_bad_token_still_closes_the_socket_with_4401(app: FastAPI) -> None:
    with client(app).websocket_connect("/ws", subprotocols=["bearer", "not-a-token"]) as socket:
        closed = socket.receive()
    assert closed["type"] == "websocket.close" and closed["code"] == ws.CLOSE_UNAUTHORIZED


def test_a_failure_inside_the_socket_is_logged_and_the_client_hears_a_plain_1011(
    app: FastAPI, minter: TokenMinter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_: ws.Session) -> None:
        raise ValueError("postgres://orrery:secret@db failed")

    monkeypatch.setattr(ws.Session, "run", broken)
    with (
        caplog.at_level(logging.ERROR, logger=ws.log.name),
        client(app).websocket_connect("/ws", subprotocols=["bearer", minter.token()]) as socket,
    ):
        closed = socket.receive()
    assert closed == {"type": "websocket.close", "code": ws.CLOSE_INTERNAL_ERROR, "reason": "internal error"}
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ValueError]
    assert app.state.gateway.hub.count() == 0  # the socket left the hub all the same


def test_once_signed_in_a_socket_keeps_no_handshake_headers_nor_the_token_outside_its_session(
    app: FastAPI, minter: TokenMinter
) -> None:
    token = minter.token()
    with client(app).websocket_connect("/ws?token=" + token, subprotocols=["bearer", token]) as socket:
        socket.send_json({"type": "ping"})
        assert socket.receive_json() == {"type": "pong"}
        (connection,) = [c for sockets in app.state.gateway.hub._by_user.values() for c in sockets]
        held = connection.websocket
        assert held.scope["headers"] == () and held.scope["query_string"] == b"" and not held.scope["subprotocols"]
        assert token not in repr(held.scope) and token not in repr(vars(held))
        assert not held.headers and not held.query_params


def test_a_sockets_principal_keeps_only_the_claims_it_reads_again() -> None:
    claims = {"sub": str(uuid4()), "name": "ada", "guest": False, "jti": "j1", "iat": 1, "exp": 4_000_000_000}
    claims |= {"iss": "orrery-auth", "aud": "orrery"}
    full = Principal(UUID(str(claims["sub"])), "ada", False, claims)
    kept = ws.lean(full)
    assert dict(kept.claims) == {"exp": 4_000_000_000, "jti": "j1"}
    assert (kept.user_id, kept.name, kept.is_guest) == (full.user_id, full.name, full.is_guest)
    assert (kept.expires_at, kept.token_id) == (full.expires_at, full.token_id)
