"""How many sockets one user holds, across every gateway instance: leases in Redis.

Each open socket holds a lease in the sorted set `sockets:{user_id}` (member: the instance and the socket; score:
when the lease runs out). A socket is admitted only while the user holds fewer than `max_per_user` unexpired
leases. Every instance renews the leases of its sockets each third of a lease, so a crashed instance's leases
simply run out. When Redis cannot be reached the socket is admitted (it can do little else until Redis answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from uuid import UUID, uuid4

from redis.asyncio import Redis

from orrery_gateway.hub import Hub

log = logging.getLogger(__name__)

# KEYS[1] the user's leases; ARGV: now (ms), the limit, the new lease's expiry (ms), its member, the key's ttl (ms).
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _key(user_id: UUID) -> str:
    return f"sockets:{user_id}"


class SocketLeases:
    def __init__(self, redis: Redis, hub: Hub, max_per_user: int, lease_seconds: float = 60.0) -> None:
        self.redis = redis
        self.hub = hub
        self.max_per_user = max_per_user
        self.lease_ms = int(lease_seconds * 1000)
        self._prefix = uuid4().hex[:12]  # this instance
        self._numbers = itertools.count()
        self._renewer: asyncio.Task[None] | None = None

    def new_lease(self) -> str:
        return f"{self._prefix}:{next(self._numbers)}"

    async def admit(self, user_id: UUID, lease: str) -> bool:
        """Take a lease for a new socket of `user_id`; False when the user holds `max_per_user` already."""
        now = int(time.time() * 1000)
        try:
            args = (now, self.max_per_user, now + self.lease_ms, lease, self.lease_ms * 2)
            return bool(await self.redis.eval(_ADMIT, 1, _key(user_id), *args))
        except Exception as error:
            log.warning("socket leases unavailable; admitting", extra={"error": repr(error)})
            return True

    async def release(self, user_id: UUID, lease: str) -> None:
        with contextlib.suppress(Exception):  # it runs out anyway
            await self.redis.zrem(_key(user_id), lease)

    async def renew(self) -> None:
        """Extend the leases of every socket open on this instance."""
        expiry = int(time.time() * 1000) + self.lease_ms
        pipe = self.redis.pipeline(transaction=False)
        for connection in self.hub.connections():
            if connection.lease is not None:
                pipe.zadd(_key(connection.user_id), {connection.lease: expiry}, xx=True)
                pipe.pexpire(_key(connection.user_id), self.lease_ms * 2)
        if len(pipe):
            await pipe.execute()

    def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew_forever(), name="socket-leases")

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except Exception as error:
                log.warning("renewing socket leases failed", extra={"error": repr(error)})
