"""Rate limits in Redis, shared by every replica: a sliding window over the last `window` seconds.

A fixed window lets a client spend its whole allowance at the end of one window and again at the start of the
next (twice the limit within a few seconds). Here each allowed use is kept, with its time, in a sorted set, and a
use is allowed only while fewer than `limit` fall within the last `window` seconds; a refused one is not counted,
so hammering does not push the moment it is allowed again further out.
"""

from __future__ import annotations

import secrets
import time

from redis.asyncio import Redis

# KEYS[1] the subject's set; ARGV: now (ms), window (ms), limit, a unique member. Returns 0 when the use is allowed
# (and recorded), else the milliseconds until the oldest use in the window leaves it. A key of another type under
# the same name (a fixed window's counter, from before an upgrade) is replaced, not failed on.
_SLIDING_WINDOW = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'zset' and kind ~= 'none' then
    redis.call('DEL', KEYS[1])
end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


async def hit_sliding_window(redis: Redis, key: str, limit: int, window_seconds: float) -> int:
    """Count one use under `key`; 0 if allowed, else the whole seconds (at least 1) until one would be."""
    now_ms = int(time.time() * 1000)
    member = f"{now_ms}-{secrets.token_hex(4)}"
    wait_ms = int(await redis.eval(_SLIDING_WINDOW, 1, key, now_ms, int(window_seconds * 1000), limit, member))
    return 0 if wait_ms == 0 else max(1, -(-wait_ms // 1000))
