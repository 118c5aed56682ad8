"""Redis client factory (asyncio, pooled)."""

from __future__ import annotations

from redis.asyncio import Redis

from orrery_shared.settings import RedisSettings


def make_redis(settings: RedisSettings) -> Redis:
    return Redis.from_url(settings.url, decode_responses=False, health_check_interval=30, socket_timeout=5)
