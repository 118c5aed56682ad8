"""The services' Redis client under a burst larger than its pool."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from orrery_shared.redis import make_redis
from orrery_shared.settings import RedisSettings
from tests.support.infra import Infra

pytestmark = pytest.mark.integration


async def test_a_burst_beyond_the_pool_waits_for_connections_instead_of_failing(infra: Infra) -> None:
    redis = make_redis(RedisSettings(url=infra.redis_url), max_connections=4, pool_timeout_s=10)
    key = f"test:pool:{uuid4()}"
    try:
        # Each command holds its connection for a moment (a blocking read that times out), as a turn's
        # relay or a slow command would; 200 at once is fifty times the pool.
        async def command(n: int) -> None:
            await redis.blpop([f"{key}:{n}"], timeout=0.05)
            await redis.incr(key)

        await asyncio.gather(*(command(n) for n in range(200)))
        assert int(await redis.get(key) or 0) == 200
        pool = redis.connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        assert opened <= 4
    finally:
        await redis.delete(key)
        await redis.aclose()
