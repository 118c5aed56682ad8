"""Idempotent consumption: an event's effect and its inbox mark commit together, or not at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from orrery_shared.db.database import Database, Transaction
from orrery_shared.events import Event

E = TypeVar("E", bound=Event)
Effect = Callable[[E, Transaction], Awaitable[None]]


def idempotent(db: Database, consumer: str, effect: Effect[E]) -> Callable[[E], Awaitable[None]]:
    """Wrap `effect` so a redelivered event (same event_id) changes nothing."""

    async def handle(event: E) -> None:
        async with db.transaction() as tx:
            if await tx.claim(event.event_id, consumer):
                await effect(event, tx)

    return handle
