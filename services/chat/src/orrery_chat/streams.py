"""The token path's Redis side: each turn's entries in the Redis Stream `turn:{turn_id}`, and cancel flags.

Every entry carries a `seq` that only grows within a turn (a regenerated turn continues after the entries of
the interrupted attempt), so a reader resuming "after seq N" gets exactly what follows, with no gap or repeat.
Entry types: delta {text}, restart {}, done {message_id, status}, error {reason, retryable}.
"""

from __future__ import annotations

from uuid import UUID

from redis.asyncio import Redis


def stream_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}"


def cancel_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}:cancel"


class TokenStream:
    """Writes one turn's stream; a delta costs one Redis round trip, which also reads the cancel flag."""

    def __init__(self, redis: Redis, turn_id: UUID, *, active_ttl: int = 3600, finished_ttl: int = 300) -> None:
        self.redis = redis
        self.key = stream_key(turn_id)
        self.cancel = cancel_key(turn_id)
        self.active_ttl = active_ttl
        self.finished_ttl = finished_ttl
        self.seq = 0

    async def resume_numbering(self) -> None:
        """Continue after whatever an earlier attempt of this turn already wrote."""
        last = await self.redis.xrevrange(self.key, count=1)
        if last:
            _, fields = last[0]
            self.seq = int((fields or {})[b"seq"])

    async def delta(self, text: str) -> bool:
        """Append a delta; returns True when the user asked to cancel the turn."""
        self.seq += 1
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, {"seq": self.seq, "type": "delta", "text": text})
        if self.seq == 1:
            pipe.expire(self.key, self.active_ttl)
        pipe.exists(self.cancel)
        results = await pipe.execute()
        return bool(results[-1])

    async def cancelled(self) -> bool:
        return bool(await self.redis.exists(self.cancel))

    async def restart(self) -> None:
        await self._final({"type": "restart"}, ttl=self.active_ttl)

    async def done(self, message_id: UUID, status: str) -> None:
        await self._final({"type": "done", "message_id": str(message_id), "status": status})

    async def error(self, reason: str, retryable: bool) -> None:
        await self._final({"type": "error", "reason": reason, "retryable": int(retryable)})

    async def _final(self, fields: dict[str, str | int], ttl: int | None = None) -> None:
        self.seq += 1
        entry: dict[str | bytes, str | int] = {"seq": self.seq}
        entry.update(fields)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, entry)  # type: ignore[arg-type]
        pipe.expire(self.key, ttl or self.finished_ttl)
        await pipe.execute()
