"""Fixed-window rate limits in Redis, shared by every replica of the service."""

from __future__ import annotations

import hashlib
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orrery_auth.domain import RateLimited, Unavailable

# Count the hit and start the window on the first one, atomically; answer the count and the window's rest.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


class RateLimiter(Protocol):
    async def hit(self, bucket: str, subject: str, limit: int, window_seconds: int) -> None:
        """Count one request of `subject` in `bucket`; raises RateLimited past `limit` per window."""
        ...


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_HIT)

    def key(self, bucket: str, subject: str) -> str:
        # Hashed so addresses and IPs do not sit in Redis in clear.
        digest = hashlib.sha256(f"{bucket}\0{subject}".encode()).hexdigest()[:32]
        return f"{self.prefix}rl:{bucket}:{digest}"

    async def hit(self, bucket: str, subject: str, limit: int, window_seconds: int) -> None:
        """Count one request of `subject` in `bucket`; raises RateLimited past `limit` per window."""
        try:
            count, ttl_ms = await self._script(keys=[self.key(bucket, subject)], args=[window_seconds * 1000])
        except RedisError:
            raise Unavailable() from None
        if int(count) > limit:
            raise RateLimited(retry_after=max(1, -(-int(ttl_ms) // 1000)))
