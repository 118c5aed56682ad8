"""A service's database: an async engine bound to its own schema, and transactions that can publish events."""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import psycopg
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from orrery_shared.db.outgoing import outbox_row
from orrery_shared.db.tables import inbox, outbox
from orrery_shared.events import Event


def make_engine(database_url: str, schema: str, pool_size: int = 10) -> AsyncEngine:
    """An engine whose connections only see `schema` (plus pg_catalog).

    The pool keeps `pool_size` connections and no more: a burst waits for a free one (up to 30 s) instead of
    opening extra connections that are closed again on return, which under steady load meant a new server
    process per transaction.
    """
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"options": f"-csearch_path={schema}", "connect_timeout": 5},
    )
    sa_event.listen(engine.sync_engine.pool, "checkout", _refuse_stale_connection)
    return engine


def _refuse_stale_connection(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
    """Replace a pooled connection the server has closed (a restart, an idle timeout, a terminated backend)."""
    if _closed_by_server(proxy.driver_connection):
        raise sa_exc.DisconnectionError("the server closed the connection")


def _closed_by_server(driver: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection is gone. An idle connection has nothing to read: if its socket is readable,
    the server sent its goodbye or closed it. That costs a poll of the socket, where a ping costs a round trip
    per transaction."""
    pgconn = driver.pgconn
    if pgconn.status != psycopg.pq.ConnStatus.OK:
        return True
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


class Transaction:
    """One database transaction: state changes, events to publish after commit, and consumed-event marks."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.published: list[Event] = []

    async def publish(self, event: Event) -> None:
        """Record `event` in the outbox; it reaches Kafka only if this transaction commits."""
        await self.session.execute(outbox.insert().values(**outbox_row(event)))
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
