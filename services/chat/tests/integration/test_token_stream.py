"""A turn's token stream as Redis holds it: entries, numbering, expiry and the cancel flag."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from orrery_chat.streams import RedisTokenStream as TokenStream
from orrery_shared.turn_keys import cancel_key, stream_key
from tests.support.infra import Infra


@pytest.fixture
async def redis(infra: Infra) -> AsyncIterator[Redis]:
    client = Redis.from_url(infra.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def entries(redis: Redis, turn_id: object) -> list[dict[str, str]]:
    raw = await redis.xrange(f"turn:{turn_id}")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]


async def test_deltas_written_in_batches_are_one_entry_each_numbered_in_order_then_done(redis: Redis) -> None:
    turn_id = uuid4()
    stream = TokenStream(redis, turn_id, active_ttl=600, finished_ttl=60)
    texts = [f"w{i} " for i in range(50)] + ["", "naïve ✨", "a 'quoted' \"text\"\n"]
    for text in texts:
        await stream.push(text)
    await stream.flush()
    assert 0 < await redis.ttl(stream_key(turn_id)) <= 600  # set with the first write, while it streams
    message_id = uuid4()
    await stream.done(message_id, "complete")

    written = await entries(redis, turn_id)
    assert written[:-1] == [{"seq": str(i), "type": "delta", "text": t} for i, t in enumerate(texts, start=1)]
    done = {"seq": str(len(texts) + 1), "type": "done", "message_id": str(message_id), "status": "complete"}
    assert written[-1] == done
    assert 0 < await redis.ttl(stream_key(turn_id)) <= 60


async def test_a_later_attempt_numbers_on_after_the_earlier_ones_entries(redis: Redis) -> None:
    turn_id = uuid4()
    first = TokenStream(redis, turn_id)
    for text in ("a", "b", "c"):
        await first.push(text)
    await first.flush()

    again = TokenStream(redis, turn_id, attempt=2)
    await again.restart()
    await again.push("x")
    await again.flush()
    assert [(e["seq"], e["type"]) for e in await entries(redis, turn_id)] == [
        ("1", "delta"),
        ("2", "delta"),
        ("3", "delta"),
        ("4", "restart"),
        ("5", "delta"),
    ]


async def test_once_the_cancel_flag_is_set_nothing_more_is_written_and_text_is_what_was(redis: Redis) -> None:
    turn_id = uuid4()
    stream = TokenStream(redis, turn_id)
    await stream.push("before ")
    await stream.flush()
    assert not stream.cancel_requested
    await redis.set(cancel_key(turn_id), 1, ex=60)
    for text in ("after ", "and more"):
        await stream.push(text)
    await stream.flush()
    assert stream.cancel_requested
    assert await stream.cancelled()
    await stream.push("later still")
    await stream.done(uuid4(), "cancelled")

    written = await entries(redis, turn_id)
    assert [(e["seq"], e["type"], e.get("text")) for e in written] == [("1", "delta", "before "), ("2", "done", None)]
    assert stream.text == "before "


async def test_a_stream_cancelled_before_its_first_delta_writes_none(redis: Redis) -> None:
    turn_id = uuid4()
    await redis.set(cancel_key(turn_id), 1, ex=60)
    stream = TokenStream(redis, turn_id)
    await stream.push("unseen")
    assert stream.cancel_requested
    assert stream.time_to_first_delta is None and stream.text == ""
    assert not await redis.exists(stream_key(turn_id))
