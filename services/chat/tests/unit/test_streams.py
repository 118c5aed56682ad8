"""Writing a turn's token stream: when deltas leave for Redis relative to reading the provider's reply."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from orrery_chat.streams import BATCH_YIELD
from orrery_chat.streams import RedisTokenStream as TokenStream


class RecordingRedis:
    """Enough of redis.asyncio.Redis for TokenStream's writes; notes how far reading had got at each write."""

    def __init__(self, progress: list[int]) -> None:
        self.progress = progress
        self.writes: list[tuple[int, list[str]]] = []
        self.completed_at: list[int] = []  # how far reading had got when each write's reply arrived
        self.seq = 0

    async def eval(self, script: str, n: int, *keys_and_args: Any) -> int:
        # KEYS: stream, cancel flag, fence; ARGV: attempt, ttl, fence ttl, seq floor, then the deltas.
        texts = list(keys_and_args[n + 4 :])
        self.writes.append((len(self.progress), texts))
        await asyncio.sleep(0.001)  # the round trip
        self.completed_at.append(len(self.progress))
        self.seq += len(texts)
        return self.seq


async def write_all(stream: TokenStream, reply: Any) -> None:
    async for delta in reply:
        await stream.push(delta)
    await stream.flush()


async def test_the_first_delta_is_written_before_the_rest_of_an_already_received_reply_is_read() -> None:
    read: list[int] = []
    redis = RecordingRedis(read)
    stream = TokenStream(redis, uuid4())  # type: ignore[arg-type]

    async def reply() -> Any:
        # A fast provider: every chunk is already buffered, so iterating never yields to the loop.
        for i in range(100):
            read.append(i)
            yield f"t{i} "

    await write_all(stream, reply())

    first_write_at, first_texts = redis.writes[0]
    assert (first_write_at, first_texts) == (1, ["t0 "])  # sent while only the first delta had been read
    assert redis.completed_at[0] == 1  # and written before the second was read
    # The deltas read meanwhile go together once reading waits (this reply never does), at most BATCH_YIELD later.
    assert redis.writes[1] == (1 + BATCH_YIELD, [f"t{i} " for i in range(1, 1 + BATCH_YIELD)])
    assert [t for _, texts in redis.writes for t in texts] == [f"t{i} " for i in range(100)]
    assert len(redis.writes) == 3  # the rest went while the second write was in flight


async def test_later_deltas_of_one_network_read_go_together_and_leave_when_reading_waits() -> None:
    read: list[int] = []
    redis = RecordingRedis(read)
    stream = TokenStream(redis, uuid4())  # type: ignore[arg-type]

    async def reply() -> Any:
        # Three network reads of three deltas each: reading waits for the network between them.
        for piece in range(3):
            await asyncio.sleep(0.005)
            for i in range(3):
                read.append(piece * 3 + i)
                yield f"t{piece * 3 + i} "

    await write_all(stream, reply())

    assert [(at, texts) for at, texts in redis.writes] == [
        (1, ["t0 "]),
        (3, ["t1 ", "t2 "]),  # sent as soon as reading waited, before the next read arrived
        (6, ["t3 ", "t4 ", "t5 "]),
        (9, ["t6 ", "t7 ", "t8 "]),
    ]
    assert stream.time_to_first_delta is not None
