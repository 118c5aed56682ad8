"""The sliding window: never more than `limit` uses in any `window`, even across what a fixed window's edge was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from orrery_shared.ratelimit import hit_sliding_window
from tests.support.processes import free_port, private_redis


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    port = free_port()
    with private_redis(port):
        client = Redis.from_url(f"redis://127.0.0.1:{port}/0")
        yield client
        await client.aclose()


async def test_no_double_burst_at_a_window_edge_and_refusals_are_not_counted(redis: Redis) -> None:
    window = 2.0
    # Start 0.3 s before a fixed window (aligned on whole multiples of `window`) would begin anew.
    await asyncio.sleep((window - time.time() % window - 0.3) % window)
    assert [await hit_sliding_window(redis, "k", 3, window) for _ in range(3)] == [0, 0, 0]
    refused = await hit_sliding_window(redis, "k", 3, window)
    assert 1 <= refused <= 2
    await asyncio.sleep(0.6)  # past where a fixed window would have reset
    assert await hit_sliding_window(redis, "k", 3, window) > 0
    await asyncio.sleep(window - 0.6 + 0.2)  # the first uses have left the window; the refusals never counted
    assert [await hit_sliding_window(redis, "k", 3, window) for _ in range(3)] == [0, 0, 0]
    assert await hit_sliding_window(redis, "k", 3, window) > 0
    assert await hit_sliding_window(redis, "other", 3, window) == 0


async def test_a_fixed_window_counter_left_under_the_same_key_is_replaced_not_an_error(redis: Redis) -> None:
    await redis.set("upgraded", 7, ex=900)  # what the fixed windows stored
    assert await hit_sliding_window(redis, "upgraded", 3, 60) == 0
    assert await redis.type("upgraded") == b"zset"
