"""The gateway's lighter WebSocket protocol, under uvicorn itself, and its minimal queue and flag."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import connect

from orrery_gateway.app import create_app
from orrery_gateway.server import Flag, Inbox, LeanWebSocketProtocol, uvicorn_options
from orrery_gateway.settings import GatewaySettings
from tests.support.tokens import TokenMinter


async def test_the_inbox_hands_items_over_in_order_and_wakes_its_reader() -> None:
    inbox: Inbox[int] = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await reader == 1
    assert not inbox.empty() and await inbox.get() == 2 and inbox.empty()


async def test_an_inbox_reader_that_is_cancelled_loses_nothing_and_a_second_reader_is_refused() -> None:
    inbox: Inbox[str] = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await inbox.get()
    inbox.put_nowait("kept")
    reader.cancel()  # woken, but cancelled before it ran: the item stays
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert await asyncio.wait_for(inbox.get(), 1) == "kept"


async def test_a_flag_lets_waiters_through_only_while_set() -> None:
    flag = Flag(is_set=True)
    assert await flag.wait() and flag.is_set()
    flag.clear()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    cancelled = asyncio.create_task(Flag().wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled


@asynccontextmanager
async def served(app: ASGIApp, **options: Any) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """`app` under uvicorn on a free port, with the gateway's WebSocket options."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def sockets_of(server: uvicorn.Server) -> list[LeanWebSocketProtocol]:
    return [c for c in server.server_state.connections if isinstance(c, LeanWebSocketProtocol)]


async def test_the_gateway_serves_sockets_with_the_lighter_protocol_which_forgets_the_handshake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    minter = TokenMinter()
    monkeypatch.setenv("ORRERY_JWT_JWKS", minter.jwks)
    options = uvicorn_options(GatewaySettings())
    assert options["ws"] is LeanWebSocketProtocol
    async with (
        served(create_app(), **options) as (url, server),
        connect(f"{url}/ws", subprotocols=["bearer", minter.token()]) as ws,  # type: ignore[list-item]
    ):
        for _ in range(200):  # a burst: reading pauses and resumes as the inbox fills and drains
            await ws.send(json.dumps({"type": "ping"}))
        assert [json.loads(await ws.recv())["type"] for _ in range(200)] == ["pong"] * 200
        (protocol,) = sockets_of(server)
        assert not hasattr(protocol, "request") and not hasattr(protocol, "response")
        parser: Any = protocol.conn.parser
        parsed = parser.gi_frame.f_locals["request"]  # websockets' parser still holds the request object
        assert list(parsed.headers.raw_items()) == []
    await asyncio.sleep(0.1)
    assert sockets_of(server) == []


async def test_a_client_that_reads_slowly_gets_every_frame_once_it_reads_again() -> None:
    frames, size = 400, 64 * 1024

    async def flood(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for n in range(frames):  # far beyond the transport's buffer: sending waits until the client reads
            await send({"type": "websocket.send", "text": f"{n:08d}" + "x" * size})
        await send({"type": "websocket.close", "code": 1000})

    options = uvicorn_options(GatewaySettings())
    async with served(flood, **options) as (url, server), connect(url, max_queue=1) as ws:
        await asyncio.sleep(0.3)
        (protocol,) = sockets_of(server)
        assert not protocol.writable.is_set()  # the transport's buffer is full: sending waits on the flag
        received = [await ws.recv() for _ in range(frames)]
    assert [int(str(f)[:8]) for f in received] == list(range(frames))
