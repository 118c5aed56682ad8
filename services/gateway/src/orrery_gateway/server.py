"""How the gateway's uvicorn serves sockets: a lighter WebSocket protocol and its options."""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from orrery_gateway.settings import GatewaySettings

T = TypeVar("T")


class Inbox(Generic[T]):
    """What `asyncio.Queue` does for a socket's one reader, without its three deques and event (~3 KiB)."""

    __slots__ = ("_items", "_reader")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._reader: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        while not self._items:
            if self._reader is not None:
                raise RuntimeError("a socket's inbox has one reader at a time")
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._items.pop(0)


class Flag:
    """`asyncio.Event`, with no deque of waiters until one waits (~0.9 KiB)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, is_set: bool = False) -> None:
        self._set = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        if self._waiters is None:
            self._waiters = []
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, keeping less for each open socket.

    Its receive queue and its writable flag are the minimal `Inbox` and `Flag`, and the handshake's request
    and response (every header, parsed by websockets) are dropped once the response is written.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag(is_set=True)  # type: ignore[assignment]

    def start_keepalive(self) -> None:
        # Called once, right after the handshake's response is written: nothing reads the handshake again.
        super().start_keepalive()
        self.request.headers.clear()  # websockets' parser keeps the request object itself
        del self.request, self.response


def uvicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    # Frames beyond our own limit get an error frame; far larger ones are refused by the server itself.
    # Deltas are a few bytes: per-message compression would cost more memory per socket than it saves.
    # The sans-I/O WebSocket protocol keeps a socket to one protocol object and timers (no keepalive task per
    # socket): ~15% less memory per idle socket than uvicorn's default implementation, measured by bench/;
    # LeanWebSocketProtocol trims it further.
    # The server pings every socket each interval; one that does not answer within another interval is dropped
    # (a vanished peer), while ORRERY_GATEWAY_IDLE_TIMEOUT_SECONDS closes live sockets that send nothing.
    return {
        "ws": LeanWebSocketProtocol,
        "ws_max_size": 1024 * 1024,
        "ws_ping_interval": settings.ping_interval_seconds,
        "ws_ping_timeout": settings.ping_interval_seconds,
        "ws_per_message_deflate": False,
    }
