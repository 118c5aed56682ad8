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


def _stream_error(payload: object, request: httpx2.Request) -> openai.APIError | None:
    """The provider's in-stream error, as the SDK raises it, if `payload` is one."""
    if not isinstance(payload, Mapping) or not payload.get("error"):
        return None
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
        request = self.response.request
        try:
            async for chunk in self._events():
                yield chunk
        except httpx2.TimeoutException:
            raise openai.APITimeoutError(request=request) from None
        except httpx2.TransportError as error:
            # The connection broke mid-body: the same error the SDK raises when a request cannot complete.
            raise openai.APIConnectionError(message=str(error) or type(error).__name__, request=request) from error
        finally:
            await self.response.aclose()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        event = _Event()
        lines = self.response.aiter_lines()
        async for line in lines:
            if line:
                event.take(line)
                continue
            if not event.data:
                event = _Event()
                continue
            data = "\n".join(event.data)
            if data.startswith("[DONE]"):
                await _read_to_end(lines)
                return
            try:
                payload = json.loads(data)
            except ValueError:
                raise openai.APIError(
                    "the provider sent a malformed stream chunk", request=self.response.request, body=None
                ) from None
            error = _stream_error(payload, self.response.request)
            if error is not None:
                raise error
            if isinstance(payload, dict):
                yield payload
            event = _Event()


async def _read_to_end(lines: AsyncIterator[str]) -> None:
    """Read what follows `[DONE]` (the body's end, normally already here) so the connection can be reused: a
    response closed before its end takes its connection with it, and the next request opens a new one. A
    provider that keeps sending costs only that connection."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in lines:
                pass


class _Event:
    """The data lines of one event being read (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""

    def __init__(self) -> None:
        self.data: list[str] = []

    def take(self, line: str) -> None:
        if line.startswith(":"):
            return  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":  # the event's name does not matter: an error is recognised by its payload
            self.data.append(value)


def chunk_text(chunk: Mapping[str, Any]) -> tuple[str, str | None]:
    """A chunk's text delta (possibly empty) and its finish reason, tolerating providers' omissions."""
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
