"""Per-user rate limits in Redis, sliding windows shared by every gateway instance (orrery_shared.ratelimit)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from orrery_shared.ratelimit import hit_sliding_window


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
        """Count one use of `limit` by `subject`; refused while `limit.count` uses fall in the last window."""
        key = f"{self.prefix}:{limit.name}:{subject}"
        wait = await hit_sliding_window(self.redis, key, limit.count, limit.window_seconds)
        return Verdict(True) if wait == 0 else Verdict(False, retry_after=wait)
