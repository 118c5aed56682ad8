"""The gateway's one reader of every relayed turn stream, against the real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis

from orrery_gateway import turns
from orrery_gateway.fanin import TurnStreams
from orrery_gateway.turns import TurnSilent
from orrery_shared.http import ApiError
from tests.support.infra import Infra
from tests.support.processes import free_port, private_redis

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(infra: Infra) -> AsyncIterator[Redis]:
    client = Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def streams(redis: Redis) -> AsyncIterator[TurnStreams]:
    fan_in = TurnStreams(redis, block_ms=500)
    fan_in.start()
    yield fan_in
    await fan_in.stop()


async def write(redis: Redis, turn_id: UUID, *entries: dict[str, Any]) -> None:
    for entry in entries:
        await redis.xadd(f"turn:{turn_id}", entry)


def reply(words: list[str], message_id: UUID) -> list[dict[str, Any]]:
    deltas = [{"seq": n, "type": "delta", "text": w} for n, w in enumerate(words, start=1)]
    return [*deltas, {"seq": len(words) + 1, "type": "done", "message_id": str(message_id), "status": "complete"}]


async def collect(frames: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [frame async for frame in frames]


async def test_many_concurrent_turns_each_get_exactly_their_own_frames_in_order(
    redis: Redis, streams: TurnStreams
) -> None:
    turn_ids = [uuid4() for _ in range(50)]
    followers = [asyncio.create_task(collect(streams.follow(t, silence_s=10))) for t in turn_ids]
    await asyncio.sleep(0.05)
    for round_ in range(5):  # interleaved writes, as concurrent replies arrive
        for n, turn_id in enumerate(turn_ids):
            await write(redis, turn_id, {"seq": round_ + 1, "type": "delta", "text": f"{n}:{round_} "})
    for turn_id in turn_ids:
        await write(redis, turn_id, {"seq": 6, "type": "done", "message_id": str(turn_id), "status": "complete"})
    results = await asyncio.wait_for(asyncio.gather(*followers), 10)
    for n, (turn_id, frames) in enumerate(zip(turn_ids, results, strict=True)):
        assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5, 6]
        assert "".join(f["text"] for f in frames[:-1]) == "".join(f"{n}:{r} " for r in range(5))
        assert frames[-1] == {
            "type": "turn.done",
            "turn_id": str(turn_id),
            "seq": 6,
            "message_id": str(turn_id),
            "status": "complete",
        }
    assert streams.following() == 0  # finished followers leave


async def test_a_follower_started_after_the_reply_gets_it_all_and_a_resume_only_what_follows(
    redis: Redis, streams: TurnStreams
) -> None:
    turn_id, message_id = uuid4(), uuid4()
    await write(redis, turn_id, *reply(["Mind ", "the ", "spores."], message_id))
    whole = await asyncio.wait_for(collect(streams.follow(turn_id)), 5)
    assert "".join(f.get("text", "") for f in whole) == "Mind the spores." and whole[-1]["type"] == "turn.done"
    resumed = await asyncio.wait_for(collect(streams.follow(turn_id, after_seq=2)), 5)
    assert [f["seq"] for f in resumed] == [3, 4]
    # Resuming after the end (or past it) ends at once, rather than waiting out the silence limit.
    for past in (4, 9):
        assert await asyncio.wait_for(collect(streams.follow(turn_id, after_seq=past, silence_s=60)), 2) == []


async def test_a_second_follower_joining_mid_stream_reads_from_the_start_without_disturbing_the_first(
    redis: Redis, streams: TurnStreams
) -> None:
    turn_id = uuid4()
    first = asyncio.create_task(collect(streams.follow(turn_id, silence_s=10)))
    await write(redis, turn_id, {"seq": 1, "type": "delta", "text": "a"}, {"seq": 2, "type": "delta", "text": "b"})
    await asyncio.sleep(0.1)
    second = asyncio.create_task(collect(streams.follow(turn_id, after_seq=1, silence_s=10)))
    await asyncio.sleep(0.1)
    await write(redis, turn_id, {"seq": 3, "type": "delta", "text": "c"})
    await write(redis, turn_id, {"seq": 4, "type": "error", "reason": "cut short", "retryable": 1})
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert [f["seq"] for f in one] == [1, 2, 3, 4] and one[-1]["type"] == "turn.failed"
    assert [f["seq"] for f in two] == [2, 3, 4]


async def test_a_new_follower_is_served_at_once_even_while_the_reader_is_blocked(redis: Redis, infra: Infra) -> None:
    slow = TurnStreams(redis, block_ms=60_000)  # longer than this test: only the wake can end a read
    slow.start()
    try:
        await asyncio.sleep(0.2)  # the reader is now blocked on nothing but its wake stream
        turn_id = uuid4()
        await write(redis, turn_id, *reply(["now"], uuid4()))
        frames = await asyncio.wait_for(collect(slow.follow(turn_id)), 2)
        assert frames[0]["text"] == "now"
    finally:
        await slow.stop()


async def test_a_turn_that_stays_silent_ends_with_turn_silent(streams: TurnStreams) -> None:
    with pytest.raises(TurnSilent):
        await collect(streams.follow(uuid4(), silence_s=0.3))
    assert streams.following() == 0


async def test_a_redis_restart_mid_reply_fails_no_follower_and_the_restarted_reply_reaches_it() -> None:
    """What a client is told must be what happened: the turn did not fail, so the follower hears no failure."""
    port = free_port()
    turn_id = uuid4()
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1)
    with private_redis(port):
        fan_in = TurnStreams(redis, block_ms=200)
        fan_in.start()
        follower = asyncio.create_task(collect(fan_in.follow(turn_id, silence_s=20)))
        await write(redis, turn_id, {"seq": 1, "type": "delta", "text": "lost "})
        await asyncio.sleep(0.5)
    await asyncio.sleep(1)  # the reader meets the outage
    assert not follower.done()
    with private_redis(port):
        # Chat's retry after the outage: the stream is gone, numbering goes on from what chat wrote.
        await write(
            redis,
            turn_id,
            {"seq": 2, "type": "restart"},
            {"seq": 3, "type": "delta", "text": "found"},
            {"seq": 4, "type": "done", "message_id": str(turn_id), "status": "complete"},
        )
        frames = await asyncio.wait_for(follower, 20)
        await fan_in.stop()
    await redis.aclose()
    assert [f["type"] for f in frames] == ["delta", "turn.restart", "delta", "turn.done"]
    assert [f["seq"] for f in frames] == [1, 2, 3, 4]


async def test_a_silent_stretch_is_announced_once_as_delayed_and_the_turn_goes_on(
    redis: Redis, streams: TurnStreams
) -> None:
    turn_id = uuid4()
    follower = asyncio.create_task(collect(streams.follow(turn_id, silence_s=10, notice_after_s=0.3)))
    await asyncio.sleep(0.05)
    await write(redis, turn_id, {"seq": 1, "type": "delta", "text": "a"})
    await asyncio.sleep(0.8)  # silent past the notice
    await write(redis, turn_id, *reply(["a", "b"], turn_id)[1:])
    frames = await asyncio.wait_for(follower, 10)
    assert [(f["type"], f["seq"]) for f in frames] == [
        ("delta", 1),
        ("turn.delayed", 1),
        ("delta", 2),
        ("turn.done", 3),
    ]


async def test_a_turn_is_followable_by_its_owner_until_its_stream_is_gone_and_no_reply_can_come(redis: Redis) -> None:
    owner, other = uuid4(), uuid4()
    fresh, kept, gone = uuid4(), uuid4(), uuid4()
    for turn_id in (fresh, kept, gone):
        await turns.claim(redis, turn_id, owner)
    await write(redis, kept, *reply(["Still ", "here."], uuid4()))
    long_ago = time.time() - 600
    for turn_id in (kept, gone):  # asked ten minutes ago
        await redis.set(f"turn:{turn_id}:owner", f"{owner} {long_ago:.0f}")

    async def chat_knows_none(turn_id: UUID) -> dict[str, Any] | None:
        return None

    await turns.followable(redis, fresh, owner, 120, chat_knows_none)  # its reply may still be on its way
    await turns.followable(redis, kept, owner, 120, chat_knows_none)
    with pytest.raises(ApiError) as refused:
        await turns.followable(redis, gone, owner, 120, chat_knows_none)
    assert (refused.value.status, refused.value.code) == (410, "gone")
    with pytest.raises(ApiError) as foreign:
        await turns.followable(redis, kept, other, 120, chat_knows_none)
    assert foreign.value.status == 404


async def test_a_turn_whose_owner_redis_lost_is_followed_or_gone_as_chat_tells(redis: Redis) -> None:
    owner = uuid4()
    answering, finished, unknown = uuid4(), uuid4(), uuid4()
    stored = {answering: "processing", finished: "completed"}

    async def chat(turn_id: UUID) -> dict[str, Any] | None:
        status = stored.get(turn_id)
        return None if status is None else {"turn_id": str(turn_id), "status": status}

    # No owner key (Redis restarted): the turn chat still answers is followed, and its owner remembered again.
    await turns.followable(redis, answering, owner, 120, chat)
    assert await turns.owned_by(redis, answering, owner)
    with pytest.raises(ApiError) as gone:
        await turns.followable(redis, finished, owner, 120, chat)  # finished, and its stream lost with Redis
    assert gone.value.status == 410
    with pytest.raises(ApiError) as missing:
        await turns.followable(redis, unknown, owner, 120, chat)  # not this user's, says chat
    assert missing.value.status == 404
