"""A WebSocket session survives a dependency failing under one of its frames."""

from __future__ import annotations

import json
from typing import Any, cast
from uuid import uuid4

from fastapi import WebSocket
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.websockets import WebSocketState

from orrery_gateway.context import Gateway
from orrery_gateway.hub import Connection
from orrery_gateway.settings import GatewaySettings
from orrery_gateway.ws import Session
from orrery_shared.auth import Principal


class RecordingSocket:
    application_state = WebSocketState.CONNECTED

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, frame: dict[str, Any]) -> None:
        self.sent.append(frame)


class UnreachableLimiter:
    async def hit(self, *_: object) -> object:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:56379. Connection refused.")


def session_with_failing_redis() -> tuple[Session, RecordingSocket]:
    socket = RecordingSocket()
    gateway = cast(Gateway, type("FakeGateway", (), {})())
    gateway.settings = GatewaySettings()
    gateway.limiter = cast(Any, UnreachableLimiter())
    principal = Principal(uuid4(), "guest-1", True, {"jti": "t1"})
    connection = Connection(cast(WebSocket, socket), principal.user_id)
    return Session(gateway, connection, principal, "Bearer t"), socket


async def test_a_frame_whose_dependency_fails_gets_an_error_frame_and_the_socket_keeps_serving() -> None:
    session, socket = session_with_failing_redis()
    await session.handle(json.dumps({"type": "spin"}))
    await session.handle(json.dumps({"type": "ping"}))
    assert [f["type"] for f in socket.sent] == ["error", "pong"]
    failure = socket.sent[0]
    assert failure["code"] == "unavailable"
    assert "127.0.0.1" not in failure["message"] and "Error" not in failure["message"]  # nothing internal leaks
