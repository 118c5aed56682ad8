"""Test scripting: queued canned replies and faults, and the log of received requests."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Endpoint = Literal["chat", "images"]


class ScriptStep(BaseModel):
    """What the stub does for the next matching request(s) instead of its default reply."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="only requests for this model consume the step")
    endpoint: Endpoint = "chat"
    times: int = Field(1, ge=1, description="how many matching requests the step applies to")
    content: str | None = Field(None, description="the reply text, streamed token by token")
    status: int | None = Field(None, ge=400, le=599, description="answer with this HTTP error instead")
    error_message: str | None = None
    retry_after_s: float | None = Field(None, ge=0, description="sent as Retry-After / retry-after-ms")
    disconnect_after_tokens: int | None = Field(None, ge=0, description="drop the connection after N tokens")
    malformed_json: bool = Field(False, description="send the reply's JSON cut in half")
    ttft_ms: float | None = Field(None, ge=0)
    tokens_per_second: float | None = Field(None, ge=0)
    finish_reason: Literal["stop", "length", "content_filter"] | None = None

    def matches(self, endpoint: Endpoint, model: str | None) -> bool:
        """Whether a request to `endpoint` for `model` consumes this step."""
        return self.endpoint == endpoint and (self.model is None or self.model == model)


@dataclass
class _Queued:
    step: ScriptStep
    remaining: int


class ScriptBook:
    """Steps in the order they were queued; each request takes the first step that matches it."""

    def __init__(self) -> None:
        self._queue: list[_Queued] = []

    def add(self, steps: list[ScriptStep]) -> None:
        """Queue `steps` after those already queued."""
        self._queue.extend(_Queued(step, step.times) for step in steps)

    def take(self, endpoint: Endpoint, model: str | None) -> ScriptStep | None:
        """The step for a request, consuming one of its uses; None when nothing is scripted for it."""
        for index, queued in enumerate(self._queue):
            if queued.step.matches(endpoint, model):
                queued.remaining -= 1
                if queued.remaining <= 0:
                    del self._queue[index]
                return queued.step
        return None

    def pending(self) -> list[dict[str, Any]]:
        """Queued steps with their remaining uses."""
        return [{**q.step.model_dump(exclude_none=True), "remaining": q.remaining} for q in self._queue]

    def clear(self) -> None:
        """Drop every queued step."""
        self._queue.clear()


class RequestLog:
    """The most recent requests, oldest dropped first."""

    def __init__(self, limit: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._counter = 0

    def add(self, entry: dict[str, Any]) -> None:
        """Record one request."""
        self._counter += 1
        self._entries.append({"seq": self._counter, **entry})

    def entries(self) -> list[dict[str, Any]]:
        """Every recorded request, oldest first."""
        return list(self._entries)

    def clear(self) -> None:
        """Forget every recorded request."""
        self._entries.clear()
