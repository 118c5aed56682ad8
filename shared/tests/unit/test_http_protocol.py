"""A request's head is timed and bounded: a slow or oversized head gets an answer and a closed connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI

from orrery_shared.http import BodyLimit
from orrery_shared.http_protocol import GuardedHttpProtocol
from tests.support.processes import free_port


class QuickHeads(GuardedHttpProtocol):
    head_timeout_seconds = 0.5


@pytest.fixture
async def server() -> AsyncIterator[int]:
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(BodyLimit, max_bytes=1_000)

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=QuickHeads, log_config=None, lifespan="off")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    while not running.started:
        await asyncio.sleep(0.01)
    yield port
    running.should_exit = True
    await asyncio.wait_for(task, 10)


async def exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send `data`, then read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_an_unfinished_head_is_answered_408_and_closed(server: int) -> None:
    started = asyncio.get_running_loop().time()
    answer = await exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert answer.startswith(b"HTTP/1.1 408")
    assert asyncio.get_running_loop().time() - started < 3


async def test_a_connection_that_says_nothing_is_closed(server: int) -> None:
    assert (await exchange(server, b"")).startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: " + b"b" * 9000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: " + b"c" * 1000 + b"\r\n" * 1 + b"X-More: d\r\n" * 1600,
    ],
)
async def test_an_oversized_head_is_answered_431(server: int, head: bytes) -> None:
    assert (await exchange(server, head)).startswith(b"HTTP/1.1 431")


async def test_ordinary_requests_on_one_connection_are_served(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    for _ in range(3):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Fine: " + b"e" * 4000 + b"\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        await reader.readexactly(length)
        await asyncio.sleep(0.6)  # longer than a head may take: idle between requests is not a slow head
    writer.close()


async def test_the_rest_of_a_body_refused_unread_is_not_taken_for_a_head(server: int) -> None:
    body = b"x" * 100_000
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(head + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert answer.startswith(b"HTTP/1.1 413")
    with contextlib.suppress(TimeoutError):
        answer += await asyncio.wait_for(reader.read(), 1)
    assert b"431" not in answer
    writer.close()
