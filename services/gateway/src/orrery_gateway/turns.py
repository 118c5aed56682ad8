"""The gateway's side of the token path: who owns a turn, cancel flags, and the frames of `turn:{turn_id}`'s entries
(read by orrery_gateway.fanin)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from orrery_shared import token_stream as entries
from orrery_shared.http import ApiError
from orrery_shared.turn_keys import cancel_key, owner_key, stream_key

OWNER_TTL_SECONDS = 3600
FINAL_TYPES = ("turn.done", "turn.failed")


class TurnSilent(Exception):
    """The turn's stream stayed silent longer than the gateway waits."""


async def claim(redis: Redis, turn_id: UUID, user_id: UUID) -> None:
    """Remember who asked for a turn, and when, so only they may resume or cancel it (on any gateway instance)."""
    await redis.set(owner_key(turn_id), f"{user_id} {time.time():.0f}", ex=OWNER_TTL_SECONDS)


async def _claim_of(redis: Redis, turn_id: UUID) -> tuple[str, float] | None:
    raw: bytes | None = await redis.get(owner_key(turn_id))  # type: ignore[assignment]
    if raw is None:
        return None
    owner, _, asked_at = raw.decode().partition(" ")
    return owner, float(asked_at) if asked_at else 0.0


async def owned_by(redis: Redis, turn_id: UUID, user_id: UUID) -> bool:
    found = await _claim_of(redis, turn_id)
    return found is not None and found[0] == str(user_id)


# Chat's account of a turn of the caller's (GET /conversations/turns/{id}); None when it has none.
TurnLookup = Callable[[UUID], Awaitable[dict[str, Any] | None]]


async def followable(redis: Redis, turn_id: UUID, user_id: UUID, waits_s: float, lookup: TurnLookup) -> None:
    """Check that the user may follow the turn's reply and that it is still there to follow: 404 for a turn that
    is not theirs, 410 for one whose stream is gone (expired after its end, or its conversation deleted) while
    no reply can be on its way any more (asked more than `waits_s` ago).

    Who asked for a turn is kept in Redis; when Redis lost it (a restart), chat, which stores every turn, tells:
    a turn chat still answers is followed (its reply starts again on a new stream), a finished one is gone."""
    found = await _claim_of(redis, turn_id)
    if found is None:
        stored = await lookup(turn_id)
        if stored is None:
            raise ApiError(404, "not_found", "no such turn")
        await redis.set(owner_key(turn_id), f"{user_id} 0", ex=OWNER_TTL_SECONDS)
        if stored["status"] != "processing" and not await redis.exists(stream_key(turn_id)):
            raise ApiError(410, "gone", "this reply is no longer kept; it is among the conversation's messages")
        return
    if found[0] != str(user_id):
        raise ApiError(404, "not_found", "no such turn")
    if time.time() - found[1] > waits_s and not await redis.exists(stream_key(turn_id)):
        raise ApiError(410, "gone", "this reply is no longer kept; it is among the conversation's messages")


async def request_cancel(redis: Redis, turn_id: UUID) -> None:
    await redis.set(cancel_key(turn_id), "1", ex=OWNER_TTL_SECONDS)


def frame(turn_id: UUID, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry (see orrery_shared.token_stream) as the WebSocket frame the client sees."""
    entry = entries.parse(fields)
    turn = str(turn_id)
    match entry:
        case entries.Delta(seq, text):
            return {"type": "delta", "turn_id": turn, "seq": seq, "text": text}
        case entries.Done(seq, message_id, status):
            return {"type": "turn.done", "turn_id": turn, "seq": seq, "message_id": message_id, "status": status}
        case entries.Restart(seq):
            return {"type": "turn.restart", "turn_id": turn, "seq": seq}
        case entries.Error(seq, reason, retryable):
            return {"type": "turn.failed", "turn_id": turn, "seq": seq, "reason": reason, "retryable": retryable}
