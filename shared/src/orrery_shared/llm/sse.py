"""Reading a streamed chat completion's body: Server-Sent Events decoded into plain chunk dicts.

The SDK still builds, authenticates and sends the request and turns HTTP error statuses into its exceptions;
only the event stream is read here. The SDK's own reader builds a typed model for every chunk and its request
path converts every message through its typed-dict machinery: for a prompt of a few dozen messages that is
several milliseconds before the first token and tens of microseconds per token, the largest cost of a chat
turn. A chunk is small JSON; a dict is all the client needs from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import openai

# Marks the request as one whose body is read by the caller (the SDK then leaves the response unread).
from openai._constants import RAW_RESPONSE_HEADER

STREAMED_BODY_HEADERS = {RAW_RESPONSE_HEADER: "stream"}
DRAIN_SECONDS = 1.0  # how long the rest of a body after `[DONE]` may take before its connection is dropped


def _stream_error(payload: Mapping[str, Any], request: httpx2.Request) -> openai.APIError:
    """The provider's in-stream error (`payload["error"]`), as the SDK raises it."""
    error = payload["error"]
    message = error.get("message") if isinstance(error, Mapping) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, request=request, body=error)


class ChunkStream:
    """The chunks of one streamed completion, in order; `close()` releases the connection."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._chunks()

    async def close(self) -> None:
        await self.response.aclose()

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        # One generator from bytes to chunks: a reply is dozens of small chunks, and each layer of iteration or
        # line splitting between the socket and the caller costs more than decoding the chunk itself.
        request = self.response.request
        pieces = self.response.aiter_bytes()
        events = EventSplitter()
        try:
            while True:
                piece = await anext(pieces, None)
                for data in events.feed(piece) if piece is not None else events.end():
                    if data.startswith(b"[DONE]"):
                        await _read_to_end(pieces)
                        return
                    try:
                        # As text: given bytes, json.loads first works out their encoding in Python, per chunk.
                        payload = json.loads(data.decode())
                    except ValueError:  # UnicodeDecodeError included
                        raise openai.APIError(
                            "the provider sent a malformed stream chunk", request=request, body=None
                        ) from None
                    if isinstance(payload, dict):
                        if payload.get("error"):
                            raise _stream_error(payload, request)
                        yield payload
                if piece is None:
                    return
        except httpx2.TimeoutException:
            raise openai.APITimeoutError(request=request) from None
        except httpx2.TransportError as error:
            # The connection broke mid-body: the same error the SDK raises when a request cannot complete.
            raise openai.APIConnectionError(message=str(error) or type(error).__name__, request=request) from error
        finally:
            await self.response.aclose()


async def _read_to_end(pieces: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (the body's end, normally already here) so the connection can be reused: a
    response closed before its end takes its connection with it, and the next request opens a new one. A
    provider that keeps sending costs only that connection."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in pieces:
                pass


class EventSplitter:
    """Splits a body, fed in pieces cut anywhere, into the data of its events
    (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines end in CRLF, LF or CR, an empty line
    ends an event, its `data` lines are joined by LF, comments and other fields are dropped, and an event
    without data is skipped."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, piece: bytes) -> list[bytes]:
        text = self._rest + piece if self._rest else piece
        held_cr = b""
        if b"\r" in text:
            if text.endswith(b"\r"):  # maybe the first half of a CRLF: decide once the next piece is here
                text, held_cr = text[:-1], b"\r"
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = text.split(b"\n\n")
        self._rest = blocks.pop() + held_cr
        found = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                found.append(block[6:])  # what providers send: one data line per event
                continue
            data = [
                value.removeprefix(b" ")
                for field, _, value in (line.partition(b":") for line in block.split(b"\n"))
                if field == b"data"
            ]
            if data:
                found.append(b"\n".join(data))
        return found

    def end(self) -> list[bytes]:
        """The body has ended: a CR held back was a line's end after all."""
        rest, self._rest = self._rest, b""
        return self.feed(rest[:-1] + b"\n") if rest.endswith(b"\r") else []


def chunk_text(chunk: Mapping[str, Any]) -> tuple[str, str | None]:
    """A chunk's text delta (possibly empty) and its finish reason, tolerating providers' omissions."""
    # Most chunks have the usual shape: it is checked in one go (dozens of chunks a reply), the rest below.
    try:
        choice = chunk["choices"][0]
        content, finish = choice["delta"]["content"], choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    else:
        if type(content) is str and (finish is None or type(finish) is str):
            return content, finish
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return "", None
    choice = choices[0]
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, Mapping) else None
    finish = choice.get("finish_reason")
    return (content if isinstance(content, str) else ""), (finish if isinstance(finish, str) else None)


def chunk_usage(chunk: Mapping[str, Any]) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a chunk that reports usage (the last one, when asked for)."""
    usage = chunk.get("usage")
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None
