"""The socket paths are served straight from the app's outermost ASGI callable, past the HTTP middleware stack."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from orrery_gateway import ws
from orrery_gateway.app import create_app
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
