"""Reading a streamed completion's body as Server-Sent Events, as providers actually send them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest

from orrery_shared.llm import sse
from orrery_shared.llm.sse import ChunkStream, chunk_text, chunk_usage

REQUEST = httpx2.Request("POST", "http://provider.test/v1/chat/completions")


class Body(httpx2.AsyncByteStream):
    """A response body arriving in the given pieces, then optionally breaking."""

    def __init__(self, pieces: list[bytes], error: Exception | None = None) -> None:
        self.pieces, self.error = pieces, error
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


async def read(body: Body) -> list[dict[str, Any]]:
    stream = ChunkStream(httpx2.Response(200, stream=body, request=REQUEST))
    return [chunk async for chunk in stream]


def delta(text: str) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":"' + text.encode() + b'"}}]}\n\n'


async def test_chunks_arrive_in_order_whatever_the_network_split_and_stop_at_done() -> None:
    raw = b": keep-alive\n\n" + delta("Hel") + delta("lo") + b"data: [DONE]\n\n" + delta("ignored")
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]  # lines cut anywhere
    body = Body(pieces)
    chunks = await read(body)
    assert [chunk_text(c)[0] for c in chunks] == ["Hel", "lo"]
    assert body.closed


async def test_a_data_field_over_several_lines_is_one_chunk_and_crlf_is_accepted() -> None:
    raw = b'event: message\r\ndata: {"choices":[{"delta":{"content":"a"},\r\ndata: "finish_reason":"stop"}]}\r\n\r\n'
    chunks = await read(Body([raw]))
    assert [chunk_text(c) for c in chunks] == [("a", "stop")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
async def test_every_line_ending_is_understood_even_when_the_body_is_cut_between_its_bytes(newline: bytes) -> None:
    events = [
        b": comment",
        b'data: {"choices":[{"delta":{"content":"one"}}]}',
        b'event: message\ndata: {"choices":[{"delta":\ndata: {"content":"two"}}]}',
        b"id: 7",  # an event without data is no chunk
        b'data: {"choices":[{"delta":{"content":"three"}}]}',  # the body's last event, without [DONE]
    ]
    raw = b"".join(event.replace(b"\n", newline) + newline * 2 for event in events)
    for size in (1, 2, 3, len(raw)):
        body = Body([raw[i : i + size] for i in range(0, len(raw), size)])
        assert [chunk_text(c)[0] for c in await read(body)] == ["one", "two", "three"], size


async def test_an_error_sent_inside_the_stream_raises_the_sdk_error_with_the_providers_message() -> None:
    raw = delta("partial") + b'event: error\ndata: {"error": {"message": "overloaded", "type": "server"}}\n\n'
    stream = ChunkStream(httpx2.Response(200, stream=Body([raw]), request=REQUEST))
    seen = []
    with pytest.raises(openai.APIError, match="overloaded"):
        async for chunk in stream:
            seen.append(chunk_text(chunk)[0])
    assert seen == ["partial"]


async def test_a_malformed_chunk_is_an_api_error_not_a_crash() -> None:
    with pytest.raises(openai.APIError, match="malformed"):
        await read(Body([b"data: {not json\n\n"]))


async def test_a_connection_broken_mid_body_is_the_sdks_connection_error() -> None:
    body = Body([delta("half")], error=httpx2.RemoteProtocolError("peer closed connection"))
    with pytest.raises(openai.APIConnectionError):
        await read(body)
    assert body.closed


async def test_a_read_timeout_mid_body_is_the_sdks_timeout_error() -> None:
    with pytest.raises(openai.APITimeoutError):
        await read(Body([delta("slow")], error=httpx2.ReadTimeout("idle")))


def test_chunk_fields_tolerate_what_providers_leave_out() -> None:
    assert chunk_text({}) == ("", None)
    assert chunk_text({"choices": []}) == ("", None)
    assert chunk_text({"choices": [{"delta": {}, "finish_reason": "length"}]}) == ("", "length")
    assert chunk_text({"choices": [{"delta": {"content": None}}]}) == ("", None)
    assert chunk_text({"choices": [{"delta": {"content": "hi"}, "finish_reason": 7}]}) == ("hi", None)
    assert chunk_text({"choices": "abc"}) == ("", None)
    assert chunk_text({"choices": [{"delta": ["content"]}]}) == ("", None)
    assert chunk_text({"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}]}) == ("hi", "stop")
    assert chunk_usage({"usage": None}) is None
    assert chunk_usage({"usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}) == (12, 3)


class EndlessAfterDone(Body):
    """A body that keeps the connection busy after `[DONE]` (it never ends by itself)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        await asyncio.sleep(3600)
        yield b""  # pragma: no cover


async def test_what_follows_done_is_read_so_the_connection_can_be_reused() -> None:
    served: list[bytes] = []

    class Recording(Body):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for piece in self.pieces:
                served.append(piece)
                yield piece

    tail = [b": trailing comment\n\n", b"\n"]
    body = Recording([delta("Hi"), b"data: [DONE]\n\n", *tail])
    assert [chunk_text(c)[0] for c in await read(body)] == ["Hi"]
    assert served[-len(tail) :] == tail  # the whole body was consumed, not left for the close to discard


async def test_a_body_that_never_ends_after_done_is_given_up_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "DRAIN_SECONDS", 0.05)
    body = EndlessAfterDone([delta("Hi"), b"data: [DONE]\n\n"])
    chunks = await asyncio.wait_for(read(body), timeout=2)
    assert [chunk_text(c)[0] for c in chunks] == ["Hi"]
    assert body.closed
