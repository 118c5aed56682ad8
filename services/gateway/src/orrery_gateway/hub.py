"""The sockets this gateway instance holds, by user, for pushing notifications and shutting down politely."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from fastapi import WebSocket
from starlette.websockets import WebSocketState

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001


class Connection:
    """One open socket. Frames from several tasks (replies, notifications) are sent one at a time."""

    __slots__ = ("_send_lock", "lease", "relaying", "user_id", "websocket")

    def __init__(self, websocket: WebSocket, user_id: UUID, lease: str | None = None) -> None:
        self.websocket = websocket
        self.user_id = user_id
        self.lease = lease  # its place among the user's sockets (orrery_gateway.socket_leases)
        self.relaying: set[UUID] = set()  # turns whose stream this socket is forwarding
        self._send_lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> bool:
        """Send a frame; False if the socket is gone (the caller simply stops)."""
        if self.websocket.application_state != WebSocketState.CONNECTED:
            return False
        try:
            async with self._send_lock:
                await self.websocket.send_json(frame)
        except Exception:  # a peer that vanished mid-send is not an error of ours
            return False
        return True

    async def close(self, code: int, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)


class Hub:
    def __init__(self) -> None:
        self._by_user: dict[UUID, set[Connection]] = {}
        self.replies: set[asyncio.Task[None]] = set()  # reply relays in flight, awaited at shutdown
        self.closing = False
        self._project_watches: dict[UUID, set[asyncio.Event]] = {}

    def watch_project(self, project_id: UUID) -> asyncio.Event:
        """An event set when this instance hears that the project's dossier changed."""
        event = asyncio.Event()
        self._project_watches.setdefault(project_id, set()).add(event)
        return event

    def unwatch_project(self, project_id: UUID, event: asyncio.Event | None) -> None:
        watches = self._project_watches.get(project_id)
        if watches is not None and event is not None:
            watches.discard(event)
            if not watches:
                del self._project_watches[project_id]

    def project_changed(self, project_id: UUID) -> None:
        for event in self._project_watches.get(project_id, ()):
            event.set()

    def add(self, connection: Connection) -> None:
        self._by_user.setdefault(connection.user_id, set()).add(connection)

    def remove(self, connection: Connection) -> None:
        sockets = self._by_user.get(connection.user_id)
        if sockets is not None:
            sockets.discard(connection)
            if not sockets:
                del self._by_user[connection.user_id]

    def connections(self) -> Iterator[Connection]:
        for sockets in self._by_user.values():
            yield from sockets

    def count(self) -> int:
        return sum(len(s) for s in self._by_user.values())

    async def push(self, user_id: UUID, frame: dict[str, Any], unless_relaying: UUID | None = None) -> None:
        """Send `frame` to every socket of `user_id` on this instance."""
        for connection in list(self._by_user.get(user_id, ())):
            if unless_relaying is not None and unless_relaying in connection.relaying:
                continue
            await connection.send(frame)

    def track(self, task: asyncio.Task[None]) -> None:
        self.replies.add(task)
        task.add_done_callback(self.replies.discard)

    async def shutdown(self, grace_seconds: float) -> None:
        """Let replies in flight finish (up to `grace_seconds`), then close every socket with 1001."""
        self.closing = True
        if self.replies:
            _, pending = await asyncio.wait(list(self.replies), timeout=grace_seconds)
            for task in pending:
                task.cancel()
        connections = [c for sockets in self._by_user.values() for c in sockets]
        await asyncio.gather(*(c.close(CLOSE_GOING_AWAY, "server shutting down") for c in connections))
        log.info("sockets closed for shutdown", extra={"count": len(connections)})
