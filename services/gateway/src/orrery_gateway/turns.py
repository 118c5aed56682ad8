"""The gateway's side of the token path: who owns a turn, cancel flags, and the frames of `turn:{turn_id}`'s entries
(read by orrery_gateway.fanin)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from redis.asyncio import Redis

OWNER_TTL_SECONDS = 3600
FINAL_TYPES = ("turn.done", "turn.failed")


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
