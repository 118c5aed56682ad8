"""The token path's Redis side: each turn's entries in the Redis Stream `turn:{turn_id}`, and cancel flags.

Every entry carries a `seq` that only grows within a turn (a regenerated turn continues after the entries of
the interrupted attempt), so a reader resuming "after seq N" gets exactly what follows, with no gap or repeat.
The entries' kinds and fields are the contract in orrery_shared.token_stream, which the gateway reads by.

Attempts are fenced. Each delivery of a turn that answers it is an attempt with a number from the database
(`turns.attempts`); the key `turn:{turn_id}:attempt` holds the newest attempt that wrote, and a write of an
older one is refused, so once a later attempt has written its `restart` an earlier one (still streaming after
a rebalance handed its turn on) writes nothing more. The entries are numbered by the scripts themselves, from
the stream's last entry, so two writers can never repeat a `seq`; and never below the last seq the writer knows
was written (its `seq`), so a stream Redis lost (a restart) goes on numbering where its readers left off.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from redis.asyncio import Redis

from orrery_shared import token_stream as entries
from orrery_shared.turn_keys import attempt_key, cancel_key, stream_key

# Reads the fence (KEYS[3]): an attempt older than the newest that wrote gets -2 and writes nothing; a newer one
# becomes the newest. Then numbers on from the stream's (KEYS[1]) last entry, or from ARGV[4] if that is higher
# (the stream was lost). ARGV[1] is the attempt; 0 writes unfenced (a turn refused before it had an attempt, or
# an announcement of a stored result).
_FENCE_AND_NUMBER = f"""
local attempt = tonumber(ARGV[1])
if attempt > 0 then
    local newest = tonumber(redis.call('GET', KEYS[3]) or '0')
    if newest > attempt then
        return -2
    end
    if newest < attempt then
        redis.call('SET', KEYS[3], attempt, 'EX', ARGV[3])
    end
end
local seq = tonumber(ARGV[4])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local kind = nil
if last[1] then
    local fields = last[1][2]
    for i = 1, #fields, 2 do
        if fields[i] == '{entries.SEQ}' then seq = math.max(seq, tonumber(fields[i + 1])) end
        if fields[i] == '{entries.TYPE}' then kind = fields[i + 1] end
    end
end
"""

# Appends a batch of deltas (ARGV[5…]), and sets the stream's expiry when ARGV[2] is not 0; or, when the turn's
# cancel flag (KEYS[2]) is set, writes nothing and returns -1. One command per batch: written one XADD each, a
# batch cost chat a command to encode and a reply to parse per delta, which was most of the time spent writing a
# reply. Reading the flag in the same script means nothing is written once it is set, and no round trip of its
# own. (EVAL, not EVALSHA: the script's text is short, and nothing needs loading again after Redis restarts.)
APPEND_DELTAS = (
    """
if redis.call('EXISTS', KEYS[2]) == 1 then
    return -1
end
"""
    + _FENCE_AND_NUMBER
    + f"""
for i = 5, #ARGV do
    seq = seq + 1
    redis.call('XADD', KEYS[1], '*', '{entries.SEQ}', seq, '{entries.TYPE}', '{entries.Kind.DELTA}',
               '{entries.TEXT}', ARGV[i])
end
if ARGV[2] ~= '0' then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return seq
"""
)

# Appends a final or restart entry (type ARGV[5], then field/value pairs) and sets the stream's expiry to ARGV[2].
# With ARGV[6] = '1' (announcing a result already stored) nothing is written, and 0 returned, when the stream
# already ends with a `done` or an `error`: a redelivery does not announce a turn twice.
APPEND_ENTRY = (
    _FENCE_AND_NUMBER
    + f"""
if ARGV[6] == '1' and (kind == '{entries.Kind.DONE}' or kind == '{entries.Kind.ERROR}') then
    return 0
end
seq = seq + 1
local entry = {{'{entries.SEQ}', seq, '{entries.TYPE}', ARGV[5]}}
for i = 7, #ARGV do
    entry[#entry + 1] = ARGV[i]
end
redis.call('XADD', KEYS[1], '*', unpack(entry))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return seq
"""
)

FENCED = -2
CANCELLED = -1

BATCH_YIELD = 64  # deltas read in a row without letting their write start


class RedisTokenStream:
    """Writes one turn's stream. Deltas are written as they come; while one write is in flight, or while the
    deltas of one network read are being read, the next deltas gather and go together in one round trip, which
    also reads the cancel flag and the fence: once the flag is set, nothing more is written and
    `cancel_requested` turns true; once a later attempt has written, nothing more is written and `superseded`
    turns true. An idle stream therefore adds one round trip per delta and a busy one far fewer. `text` is what
    was written, the reply as its readers saw it.

    `attempt` is the turn's attempt this writer speaks for (see the module's docstring); 0 writes unfenced.
    `seq` starts at the last seq known to have been written to the turn's stream (by an earlier writer of this
    process), 0 if none.
    """

    def __init__(
        self,
        redis: Redis,
        turn_id: UUID,
        *,
        attempt: int = 0,
        seq: int = 0,
        active_ttl: int = 3600,
        finished_ttl: int = 300,
    ) -> None:
        self.redis = redis
        self.key = stream_key(turn_id)
        self.cancel = cancel_key(turn_id)
        self.fence = attempt_key(turn_id)
        self.attempt = attempt
        self.active_ttl = active_ttl
        self.finished_ttl = finished_ttl
        self.seq = seq  # of the last entry known written
        self.cancel_requested = False
        self.superseded = False
        self._pending: list[str] = []
        self._written: list[str] = []
        self._writer: asyncio.Task[None] | None = None
        self._expiry_set = False
        self.opened_at = time.perf_counter()
        self.first_delta_at: float | None = None  # when the first delta was in Redis

    @property
    def stopped(self) -> bool:
        """Nothing more will be written: the user cancelled, or a later attempt took the turn over."""
        return self.cancel_requested or self.superseded

    async def push(self, text: str) -> None:
        """Queue a delta for writing: the first one now, later ones with whatever else was read meanwhile."""
        if self.stopped:
            return
        if self._writer is not None and self._writer.done():
            self._writer.result()  # a failed write (Redis gone) ends the reply here, never skipped over
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
        while self._pending and not self.stopped:
            batch, self._pending = self._pending, []
            ttl = 0 if self._expiry_set else self.active_ttl
            keys = (self.key, self.cancel, self.fence)
            args = (self.attempt, ttl, self.active_ttl, self.seq)
            last = await self.redis.eval(APPEND_DELTAS, 3, *keys, *args, *batch)
            if last in (CANCELLED, FENCED):
                self.cancel_requested = last == CANCELLED
                self.superseded = last == FENCED
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
        """Tell readers the reply is generated anew; from here on earlier attempts write nothing."""
        await self._entry(entries.Kind.RESTART, {}, ttl=self.active_ttl)

    async def done(self, message_id: UUID, status: str) -> None:
        await self._entry(entries.Kind.DONE, entries.done_fields(str(message_id), status))

    async def error(self, reason: str, retryable: bool) -> None:
        await self._entry(entries.Kind.ERROR, entries.error_fields(reason, retryable))

    async def announce_done(self, message_id: UUID, status: str) -> None:
        """`done` for a reply stored earlier, unless the stream already ends with its result."""
        await self._entry(entries.Kind.DONE, entries.done_fields(str(message_id), status), once=True)

    async def announce_error(self, reason: str, retryable: bool) -> None:
        """`error` for a turn that failed earlier, unless the stream already ends with its result."""
        await self._entry(entries.Kind.ERROR, entries.error_fields(reason, retryable), once=True)

    async def _entry(self, kind: str, fields: dict[str, str], ttl: int | None = None, once: bool = False) -> None:
        await self.flush()
        pairs = [item for pair in fields.items() for item in pair]
        args: list[str | int] = [self.attempt, ttl or self.finished_ttl, self.active_ttl, self.seq, kind, int(once)]
        args += pairs
        last = await self.redis.eval(APPEND_ENTRY, 3, self.key, self.cancel, self.fence, *args)
        if last == FENCED:
            self.superseded = True
        elif last:
            self.seq = last
