"""Every turn stream this gateway instance relays, read by one task over one Redis connection.

A blocking XREAD per relayed turn would hold a Redis connection per reply in flight (a thousand concurrent
replies, a thousand connections per gateway) and cost a round trip per token each. Instead one reader blocks
on all the streams at once — XREAD takes many keys — and hands every entry to the followers of its stream.
A new follower wakes the reader through a stream of this instance's own that is part of every read, so it
joins at once: an entry added there either ends the read in progress or makes the next one return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

from redis.asyncio import Redis

from orrery_gateway.turns import FINAL_TYPES, TurnSilent, frame
from orrery_shared import token_stream
from orrery_shared.turn_keys import stream_key

log = logging.getLogger(__name__)

StreamId = tuple[int, int]
Entry = dict[bytes, bytes]


def parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


class _Follower:
    """One reader of one turn: the position it has reached and the entries waiting for it."""

    __slots__ = ("entries", "position")

    def __init__(self) -> None:
        self.position: StreamId = (0, 0)  # every stream is followed from its start (see TurnStreams.follow)
        self.entries: asyncio.Queue[Entry] = asyncio.Queue()


async def _next_entry(follower: _Follower, within_s: float) -> Entry | None:
    """The follower's next entry, or None if none came within `within_s` seconds."""
    try:
        async with asyncio.timeout(within_s):
            return await follower.entries.get()
    except TimeoutError:
        return None


class TurnStreams:
    def __init__(self, redis: Redis, *, block_ms: int = 2000, batch: int = 1000, wake_ttl_s: int = 300) -> None:
        self._redis = redis
        self._block_ms = block_ms  # below the Redis client's socket timeout
        self._batch = batch
        self._wake_ttl_s = wake_ttl_s
        self._wake_key = f"gateway:{uuid4().hex}:wake"
        self._wake_position: StreamId = (0, 0)
        self._followers: dict[bytes, set[_Follower]] = {}
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="turn-streams")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        with contextlib.suppress(Exception):  # Redis may already be gone at shutdown; the key expires anyway
            await self._redis.delete(self._wake_key)

    def following(self) -> int:
        """How many turn streams are being read for this instance."""
        return len(self._followers)

    async def follow(
        self, turn_id: UUID, after_seq: int = 0, silence_s: float = 120.0, notice_after_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Frames of the turn after `after_seq`, as they arrive, until `turn.done` or `turn.failed`.

        The stream is read from its beginning, so a follower that starts before the turn is even published
        misses nothing, and one resuming after `after_seq` gets exactly what follows. With `notice_after_s`, a
        turn silent that long (nothing yet, or nothing since its last entry: a replica died, the broker or Redis is
        down) gets one `turn.delayed {turn_id, seq}` frame (seq: the last one relayed), so its reader can say so;
        it is no entry of the stream, and the turn goes on being followed until `silence_s`.
        """
        key = stream_key(turn_id).encode()
        follower = _Follower()
        self._followers.setdefault(key, set()).add(follower)
        try:
            try:
                await self._wake()
            except Exception as error:
                # Redis is down: the reader reads this follower's stream once Redis answers, unwoken.
                log.warning("waking the stream reader failed", extra={"error": repr(error)})
            last_seq = after_seq
            notice = notice_after_s if notice_after_s is not None and notice_after_s < silence_s else None
            while True:
                item = None if follower.entries.empty() else follower.entries.get_nowait()
                if item is None:
                    item = await _next_entry(follower, notice or silence_s)
                    if item is None and notice is not None:
                        yield {"type": "turn.delayed", "turn_id": str(turn_id), "seq": last_seq}
                        item = await _next_entry(follower, silence_s - notice)
                    if item is None:
                        raise TurnSilent(turn_id)
                if token_stream.seq_of(item) <= after_seq:
                    if frame(turn_id, item)["type"] in FINAL_TYPES:
                        return  # the follower had the whole reply already: nothing more will come
                    continue
                out = frame(turn_id, item)
                last_seq = out["seq"]
                yield out
                if out["type"] in FINAL_TYPES:
                    return
        finally:
            followers = self._followers.get(key)
            if followers is not None:
                followers.discard(follower)
                if not followers:
                    del self._followers[key]

    async def _wake(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1)
        pipe.expire(self._wake_key, self._wake_ttl_s)
        await pipe.execute()

    async def _read_forever(self) -> None:
        failures = 0
        task = asyncio.current_task()
        while True:
            try:
                await self._read_once()
                failures = 0
            except Exception as error:
                if task is not None and task.cancelling():
                    raise  # stopping: a cancellation absorbed inside the Redis client surfaces as an error here

                # Nothing can be relayed while Redis is unreachable, but the replies in flight have not failed:
                # chat waits the outage out too, and restarts them once Redis answers (a restarted Redis has lost
                # their streams). Their followers wait, and read on from where they were; one whose turn stays
                # silent past its patience gets TurnSilent. Telling a client "failed" here would be untrue.
                failures += 1
                log.warning("reading turn streams failed", extra={"error": repr(error), "followers": self.following()})
                await asyncio.sleep(min(2.0, 0.1 * 2 ** min(failures, 5)))
            if task is not None and task.cancelling():
                # Stopping, but the Redis client absorbed the cancellation (it reconnected and read on).
                raise asyncio.CancelledError

    async def _read_once(self) -> None:
        positions: dict[Any, Any] = {self._wake_key: format_id(self._wake_position)}
        for key, followers in self._followers.items():
            positions[key] = format_id(min(f.position for f in followers))
        batches: Any = await self._redis.xread(positions, block=self._block_ms, count=self._batch)
        for raw_key, entries in batches or ():
            key = raw_key if isinstance(raw_key, bytes) else raw_key.encode()
            if key == self._wake_key.encode():
                self._wake_position = parse_id(entries[-1][0])
                continue
            parsed = [(parse_id(entry_id), fields) for entry_id, fields in entries]
            for follower in self._followers.get(key, ()):
                for entry_id, fields in parsed:
                    if entry_id > follower.position:  # a follower that joined later may be re-reading the start
                        follower.position = entry_id
                        follower.entries.put_nowait(fields)
