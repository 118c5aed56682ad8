"""Rate limits in Redis, sliding windows shared by every replica of the service (orrery_shared.ratelimit)."""

from __future__ import annotations

import hashlib
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orrery_auth.domain import RateLimited, Unavailable
from orrery_shared.ratelimit import hit_sliding_window


class RateLimiter(Protocol):
    async def hit(self, bucket: str, subject: str, limit: int, window_seconds: int) -> None:
        """Count one request of `subject` in `bucket`; raises RateLimited past `limit` per window."""
        ...


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, bucket: str, subject: str) -> str:
        # Hashed so addresses and IPs do not sit in Redis in clear.
        digest = hashlib.sha256(f"{bucket}\0{subject}".encode()).hexdigest()[:32]
        return f"{self.prefix}rl:{bucket}:{digest}"

    async def hit(self, bucket: str, subject: str, limit: int, window_seconds: int) -> None:
        """Count one request of `subject` in `bucket`; raises RateLimited past `limit` per window."""
        try:
            wait = await hit_sliding_window(self.redis, self.key(bucket, subject), limit, window_seconds)
        except RedisError:
            raise Unavailable() from None
        if wait:
            raise RateLimited(retry_after=wait)
