"""A service's database: an async engine bound to its own schema, and transactions that can publish events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from orrery_shared import telemetry
from orrery_shared.db.tables import inbox, outbox
from orrery_shared.events import Event
from orrery_shared.kafka.broker import event_headers


def make_engine(database_url: str, schema: str, pool_size: int = 10) -> AsyncEngine:
    """An engine whose connections only see `schema` (plus pg_catalog)."""
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"options": f"-csearch_path={schema}", "connect_timeout": 5},
    )


class Transaction:
    """One database transaction: state changes, events to publish after commit, and consumed-event marks."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.published: list[Event] = []

    async def publish(self, event: Event) -> None:
        """Record `event` in the outbox; it reaches Kafka only if this transaction commits."""
        key = event.partition_key()
        # The trace context is taken now and stored with the row, so the relay's publish continues this trace.
        with telemetry.producing(event.TOPIC, "create", key, str(event.event_id)) as trace_context:
            headers = event_headers(event, trace_context)
        await self.session.execute(
            outbox.insert().values(
                event_id=event.event_id,
                topic=event.TOPIC,
                key=key,
                payload=event.model_dump_json(),
                headers=headers,
            )
        )
        self.published.append(event)

    async def claim(self, event_id: UUID, consumer: str) -> bool:
        """Mark `event_id` consumed by `consumer`; False if it already was (a redelivery: skip the effect)."""
        result = await self.session.execute(
            insert(inbox)
            .values(consumer=consumer, event_id=event_id)
            .on_conflict_do_nothing()
            .returning(inbox.c.event_id)
        )
        return result.first() is not None


class Database:
    """The service's engine and session factory, plus who to tell when events were committed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._on_commit: list[Callable[[], None]] = []

    def on_events_committed(self, callback: Callable[[], None]) -> None:
        self._on_commit.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Commit on normal exit, roll back on an exception; wake the outbox relay after a publishing commit."""
        async with self.sessions() as session, session.begin():
            tx = Transaction(session)
            yield tx
        if tx.published:
            for callback in self._on_commit:
                callback()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
