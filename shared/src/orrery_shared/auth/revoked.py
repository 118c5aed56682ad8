"""Users whose access tokens stop working before they expire: erased accounts.

Access tokens are verified where they are presented, without asking the auth service, so erasing an account
cannot take back the tokens already handed out. Auth therefore records an erased user in Redis for as long as
one of their tokens can still be valid, and the gateway refuses the tokens of users recorded there.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from redis.asyncio import Redis

KEY = "orrery:revoked-user:{user_id}"


def revoked_key(user_id: UUID) -> str:
    return KEY.format(user_id=user_id)


async def revoke_users(redis: Redis, user_ids: Iterable[UUID], seconds: int) -> None:
    """Refuse these users' tokens for `seconds` (at least the access tokens' lifetime and clock leeway)."""
    async with redis.pipeline(transaction=False) as pipe:
        for user_id in user_ids:
            pipe.set(revoked_key(user_id), b"erased", ex=seconds)
        await pipe.execute()


async def is_revoked(redis: Redis, user_id: UUID) -> bool:
    """Whether this user's tokens are refused."""
    return bool(await redis.exists(revoked_key(user_id)))
