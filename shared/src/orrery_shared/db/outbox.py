"""Relays committed outbox rows to Kafka, in commit order, surviving broker outages and restarts.

One relay per service schema is active at a time (a transaction-scoped advisory lock), so several replicas
never interleave rows of the same key. A batch is deleted only after Kafka acknowledged every message in it;
a crash in between re-sends the batch, which consumers absorb because they dedupe on `event_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa
from faststream.kafka import KafkaBroker

from orrery_shared.db.database import Database
from orrery_shared.metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED, OUTBOX_RELAY_FAILURES

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        broker: KafkaBroker,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        publish_timeout: float = 15.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.db = db
        self.broker = broker
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.publish_timeout = publish_timeout
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        db.on_events_committed(self.wake)

    def wake(self) -> None:
        """Relay now instead of at the next poll (called after a local commit that wrote events)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            self._wake.clear()
            try:
                sent = await self.relay_once()
                backoff = 0.1
            except Exception as error:
                OUTBOX_RELAY_FAILURES.inc()
                log.warning("outbox relay failed; retrying", extra={"error": repr(error), "backoff": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if sent == self.batch_size:
                continue  # more may be waiting
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that arrives together
            # with a wake-up, and the relay would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def relay_once(self) -> int:
        """Publish one batch in id order; returns how many rows were relayed."""
        async with self.db.sessions() as session, session.begin():
            if not await session.scalar(_TAKE_RELAY_LOCK):
                return 0
            rows = (await session.execute(_OLDEST_ROWS, {"limit": self.batch_size})).all()
            OUTBOX_BACKLOG.set(len(rows))
            if not rows:
                return 0
            pending = []
            for row in rows:
                # no_confirm enqueues without waiting, so a batch costs one round trip, not one per row;
                # the idempotent producer keeps their order within each partition.
                pending.append(
                    await self.broker.publish(
                        row.payload.encode(),
                        row.topic,
                        key=row.key.encode(),
                        headers=row.headers,
                        no_confirm=True,
                    )
                )
            async with asyncio.timeout(self.publish_timeout):
                await asyncio.gather(*pending)
            # By id, not a range: a lower id may belong to a transaction that has not committed yet.
            await session.execute(_DELETE_ROWS, {"ids": [row.id for row in rows]})
        for row in rows:
            OUTBOX_PUBLISHED.labels(row.topic).inc()
        return len(rows)


# One relay per schema at a time, for this transaction only (see the module docstring).
_TAKE_RELAY_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(hashtext('outbox:' || current_schema()))")
_OLDEST_ROWS = sa.text("SELECT id, topic, key, payload, headers FROM outbox ORDER BY id LIMIT :limit")
_DELETE_ROWS = sa.text("DELETE FROM outbox WHERE id = ANY(:ids)")
