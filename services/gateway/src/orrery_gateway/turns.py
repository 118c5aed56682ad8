"""The gateway's side of the token path: who owns a turn, cancel flags, and relaying `turn:{turn_id}`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

OWNER_TTL_SECONDS = 3600
BLOCK_MS = 2000  # below the Redis client's socket timeout


class TurnSilent(Exception):
    """The turn's stream stayed silent longer than the gateway waits."""


def _owner_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}:owner"


async def claim(redis: Redis, turn_id: UUID, user_id: UUID) -> None:
    """Remember who asked for a turn, so only they may resume or cancel it (on any gateway instance)."""
    await redis.set(_owner_key(turn_id), str(user_id), ex=OWNER_TTL_SECONDS)


async def owned_by(redis: Redis, turn_id: UUID, user_id: UUID) -> bool:
    owner: bytes | None = await redis.get(_owner_key(turn_id))  # type: ignore[assignment]
    return owner is not None and owner == str(user_id).encode()


async def request_cancel(redis: Redis, turn_id: UUID) -> None:
    await redis.set(f"turn:{turn_id}:cancel", "1", ex=OWNER_TTL_SECONDS)


def frame(turn_id: UUID, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry as the WebSocket frame the client sees."""
    kind = fields[b"type"].decode()
    seq = int(fields[b"seq"])
    if kind == "delta":
        return {"type": "delta", "turn_id": str(turn_id), "seq": seq, "text": fields[b"text"].decode()}
    if kind == "done":
        return {
            "type": "turn.done",
            "turn_id": str(turn_id),
            "seq": seq,
            "message_id": fields[b"message_id"].decode(),
            "status": fields.get(b"status", b"complete").decode(),
        }
    if kind == "restart":
        return {"type": "turn.restart", "turn_id": str(turn_id), "seq": seq}
    return {
        "type": "turn.failed",
        "turn_id": str(turn_id),
        "seq": seq,
        "reason": fields.get(b"reason", b"failed").decode(),
        "retryable": fields.get(b"retryable", b"1") == b"1",
    }


async def relay(
    redis: Redis, turn_id: UUID, after_seq: int = 0, silence_s: float = 120.0
) -> AsyncIterator[dict[str, Any]]:
    """Frames of the turn after `after_seq`, as they arrive, until `turn.done` or `turn.failed`.

    Reading starts at the stream's beginning, so a reader started before the turn was even published misses
    nothing, and one resuming after `after_seq` gets exactly what follows.
    """
    key, last_id = f"turn:{turn_id}", "0-0"
    heard = time.monotonic()
    while True:
        batches: Any = await redis.xread({key: last_id}, block=BLOCK_MS, count=500)
        if not batches:
            if time.monotonic() - heard > silence_s:
                raise TurnSilent(turn_id)
            continue
        heard = time.monotonic()
        for entry_id, fields in batches[0][1]:
            last_id = entry_id
            if int(fields[b"seq"]) <= after_seq:
                continue
            out = frame(turn_id, fields)
            yield out
            if out["type"] in ("turn.done", "turn.failed"):
                return
