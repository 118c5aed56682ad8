"""Redis client factory (asyncio, pooled)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from orrery_shared.settings import RedisSettings

MAX_CONNECTIONS = 64  # per process: enough for every concurrent command a service issues at once, bounded
POOL_TIMEOUT_SECONDS = 5.0  # the longest a command waits for a free connection before failing


def make_redis(
    settings: RedisSettings, max_connections: int = MAX_CONNECTIONS, pool_timeout_s: float = POOL_TIMEOUT_SECONDS
) -> Redis:
    # A bounded pool that makes a burst wait for a free connection (up to the timeout) instead of failing the
    # command: a thousand concurrent requests share a few dozen connections rather than erroring past 100.
    pool = BlockingConnectionPool.from_url(
        settings.url,
        max_connections=max_connections,
        timeout=pool_timeout_s,
        decode_responses=False,
        health_check_interval=30,
        socket_timeout=5,
    )
    return Redis.from_pool(pool)  # closing the client closes its pool
