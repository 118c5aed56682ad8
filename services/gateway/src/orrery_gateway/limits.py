"""Per-user rate limits in Redis: fixed windows shared by every gateway instance."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True)
class Limit:
    name: str
    count: int
    window_seconds: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str = "rl") -> None:
        self.redis = redis
        self.prefix = prefix

    async def hit(self, limit: Limit, subject: str) -> Verdict:
        """Count one use of `limit` by `subject`; refused once the window's count is spent."""
        now = int(time.time())
        window = now // limit.window_seconds
        key = f"{self.prefix}:{limit.name}:{subject}:{window}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, limit.window_seconds + 1)
        used, _ = await pipe.execute()
        if int(used) <= limit.count:
            return Verdict(True)
        return Verdict(False, retry_after=max(1, (window + 1) * limit.window_seconds - now))
