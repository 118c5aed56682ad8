"""The token path's Redis side: each turn's entries in the Redis Stream `turn:{turn_id}`, and cancel flags.

Every entry carries a `seq` that only grows within a turn (a regenerated turn continues after the entries of
the interrupted attempt), so a reader resuming "after seq N" gets exactly what follows, with no gap or repeat.
Entry types: delta {text}, restart {}, done {message_id, status}, error {reason, retryable}.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from redis.asyncio import Redis

# Appends a batch of deltas as entries numbered on from ARGV[1], and sets the stream's expiry when ARGV[2] is not
# 0; or, when the turn's cancel flag (KEYS[2]) is set, writes nothing and returns -1. One command per batch: written
# one XADD each, a batch cost chat a command to encode and a reply to parse per delta, which was most of the time
# spent writing a reply. Reading the flag in the same script means nothing is written once it is set, and no
# round trip of its own. (EVAL, not EVALSHA: the script's text is short, and nothing needs loading again after
# Redis restarts.)
APPEND_DELTAS = """
if redis.call('EXISTS', KEYS[2]) == 1 then
    return -1
end
local seq = tonumber(ARGV[1])
for i = 3, #ARGV do
    seq = seq + 1
    redis.call('XADD', KEYS[1], '*', 'seq', seq, 'type', 'delta', 'text', ARGV[i])
end
if ARGV[2] ~= '0' then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return seq
"""


BATCH_YIELD = 64  # deltas read in a row without letting their write start


def stream_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}"


def cancel_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}:cancel"


class TokenStream:
    """Writes one turn's stream. Deltas are written as they come; while one write is in flight, or while the
    deltas of one network read are being read, the next deltas gather and go together in one round trip, which
    also reads the cancel flag: once it is set, nothing more is written and `cancel_requested` turns true. An
    idle stream therefore adds one round trip per delta and a busy one far fewer. `text` is what was written,
    the reply as its readers saw it.
    """

    def __init__(self, redis: Redis, turn_id: UUID, *, active_ttl: int = 3600, finished_ttl: int = 300) -> None:
        self.redis = redis
        self.key = stream_key(turn_id)
        self.cancel = cancel_key(turn_id)
        self.active_ttl = active_ttl
        self.finished_ttl = finished_ttl
        self.seq = 0
        self.cancel_requested = False
        self._pending: list[str] = []
        self._written: list[str] = []
        self._writer: asyncio.Task[None] | None = None
        self._expiry_set = False
        self.opened_at = time.perf_counter()
        self.first_delta_at: float | None = None  # when the first delta was in Redis

    async def resume_numbering(self) -> None:
        """Continue after whatever an earlier attempt of this turn already wrote."""
        last = await self.redis.xrevrange(self.key, count=1)
        if last:
            _, fields = last[0]
            self.seq = int((fields or {})[b"seq"])

    async def push(self, text: str) -> None:
        """Queue a delta for writing: the first one now, later ones with whatever else was read meanwhile."""
        if self.cancel_requested:
            return
        self._pending.append(text)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
            # Deltas already received are read without yielding to the loop, so a fast provider's whole reply
            # would be parsed before its first delta left for Redis. The first is seen written before reading
            # on (the reply's time to first token is what users feel).
            if self.first_delta_at is None:
                await self._writer
                return
        # A later delta's write starts once reading waits for the network: the deltas of one network read go
        # together (one round trip, where yielding here sent the first of them alone), each held back by no more
        # than reading its neighbours, and never by more than BATCH_YIELD of them.
        if len(self._pending) % BATCH_YIELD == 0:
            await asyncio.sleep(0)

    async def _write_pending(self) -> None:
        while self._pending and not self.cancel_requested:
            batch, self._pending = self._pending, []
            ttl = 0 if self._expiry_set else self.active_ttl
            last = await self.redis.eval(APPEND_DELTAS, 2, self.key, self.cancel, self.seq, ttl, *batch)
            if last == -1:
                self.cancel_requested = True
                self._pending.clear()  # read after the cancel: never shown, so never kept
                return
            self.seq = last
            self._expiry_set = True
            self._written.extend(batch)
            if self.first_delta_at is None:
                self.first_delta_at = time.perf_counter()

    @property
    def text(self) -> str:
        """The deltas written so far, joined."""
        return "".join(self._written)

    async def flush(self) -> None:
        """Wait until every queued delta is written (raising what the writer raised)."""
        while self._writer is not None and not self._writer.done():
            await self._writer  # a push during the wait may start a new writer: loop
        if self._writer is not None:
            self._writer.result()

    @property
    def time_to_first_delta(self) -> float | None:
        """Seconds from creating this writer (taking the turn) to its first delta in Redis, once written."""
        return None if self.first_delta_at is None else self.first_delta_at - self.opened_at

    async def cancelled(self) -> bool:
        return bool(await self.redis.exists(self.cancel))

    async def restart(self) -> None:
        await self._final({"type": "restart"}, ttl=self.active_ttl)

    async def done(self, message_id: UUID, status: str) -> None:
        await self._final({"type": "done", "message_id": str(message_id), "status": status})

    async def error(self, reason: str, retryable: bool) -> None:
        await self._final({"type": "error", "reason": reason, "retryable": int(retryable)})

    async def _final(self, fields: dict[str, str | int], ttl: int | None = None) -> None:
        await self.flush()
        self.seq += 1
        entry: dict[str | bytes, str | int] = {"seq": self.seq}
        entry.update(fields)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, entry)  # type: ignore[arg-type]
        pipe.expire(self.key, ttl or self.finished_ttl)
        await pipe.execute()
