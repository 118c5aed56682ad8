"""Paced delivery of chat completions, streamed as OpenAI-style server-sent events or sent whole.

These responses are raw ASGI callables (a Starlette Response subclass overriding `__call__`): the
streaming path is the stub's hot loop, so it avoids per-chunk task groups and builds each event from
precomputed byte templates.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

SYSTEM_FINGERPRINT = "fp_orrery_stub"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Unpaced streams still yield to the event loop every this many tokens so other streams progress.
_UNPACED_BATCH = 64
# Timers may fire slightly early; tokens this close to due are sent now rather than after another wake-up.
_TIMER_SLACK_S = 0.002


class StubDisconnect(Exception):
    """Raised on purpose to drop a connection mid-reply (the server closes the socket)."""


class DropDeliberateDisconnects(logging.Filter):
    """Keeps scripted disconnects out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for records about a StubDisconnect."""
        return not (record.exc_info and isinstance(record.exc_info[1], StubDisconnect))


@dataclass
class ReplyPlan:
    """Everything about one reply, decided before the first byte is sent."""

    completion_id: str
    created: int
    model: str
    pieces: list[str]
    finish_reason: str
    ttft_s: float
    tokens_per_second: float
    disconnect_after: int | None
    usage: dict[str, Any]
    include_usage: bool

    def duration_s(self) -> float:
        """How long generating the whole reply takes at the planned pace."""
        rate = self.tokens_per_second
        return self.ttft_s + (len(self.pieces) / rate if rate > 0 else 0.0)

    def completion_body(self) -> dict[str, Any]:
        """The non-streamed chat.completion object."""
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(self.pieces), "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage,
        }

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    def templates(self) -> tuple[bytes, bytes, bytes, bytes]:
        """(first event, per-token prefix, per-token suffix, closing events) of the SSE stream."""
        first = self._chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
        marker = "\x00"
        token = self._chunk([{"index": 0, "delta": {"content": marker}, "logprobs": None, "finish_reason": None}])
        prefix, _, suffix = token.partition(json.dumps(marker).encode())
        closing = self._chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": self.finish_reason}])
        if self.include_usage:
            closing += self._chunk([], usage=self.usage)
        closing += b"data: [DONE]\n\n"
        return first, prefix, suffix, closing


class StreamedReply(Response):
    """Streams a ReplyPlan as SSE at its pace, or drops the connection where the plan says so."""

    def __init__(self, plan: ReplyPlan) -> None:
        super().__init__(status_code=200)
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plan
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        # The request body has been read, so the next message can only be the client going away.
        gone: asyncio.Future[Message] = asyncio.ensure_future(receive())
        try:
            first, prefix, suffix, closing = plan.templates()
            start = loop.time() + plan.ttft_s
            if plan.ttft_s > 0:
                await asyncio.sleep(plan.ttft_s)
            pieces = plan.pieces
            limit = len(pieces) if plan.disconnect_after is None else min(len(pieces), plan.disconnect_after)
            rate = plan.tokens_per_second
            head = first
            sent = 0
            while sent < limit:
                if gone.done():
                    return
                if rate > 0:
                    due = min(limit, int((loop.time() - start + _TIMER_SLACK_S) * rate) + 1)
                    if due <= sent:
                        await asyncio.sleep(start + sent / rate - loop.time())
                        continue
                else:
                    due = min(limit, sent + _UNPACED_BATCH)
                body = head + b"".join(
                    [prefix + encode_basestring_ascii(p).encode() + suffix for p in pieces[sent:due]]
                )
                head = b""
                await send({"type": "http.response.body", "body": body, "more_body": True})
                sent = due
                if rate <= 0:
                    await asyncio.sleep(0)
            if plan.disconnect_after is not None:
                if head:
                    await send({"type": "http.response.body", "body": head, "more_body": True})
                raise StubDisconnect(f"scripted disconnect after {sent} tokens")
            await send({"type": "http.response.body", "body": head + closing, "more_body": False})
        finally:
            gone.cancel()


class WholeReply(Response):
    """A non-streamed completion sent after the reply's generation time, or cut off mid-body."""

    def __init__(self, plan: ReplyPlan) -> None:
        super().__init__(status_code=200)
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plan
        body = json.dumps(plan.completion_body(), separators=(",", ":")).encode()
        await asyncio.sleep(plan.duration_s())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if plan.disconnect_after is not None:
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise StubDisconnect("scripted disconnect mid-body")
        await send({"type": "http.response.body", "body": body, "more_body": False})
