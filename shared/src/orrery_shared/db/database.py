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
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from orrery_shared.db.direct import DirectTransaction
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
    """The service's engine and session factory, plus who to tell when events were committed.

    Direct transactions (see `orrery_shared.db.direct`) take their connections from the engine's pool, but keep
    up to half of its size checked out between uses, idle: taking one back from the pool costs a direct
    statement about as much CPU as the statement itself (a greenlet hop, the pool's bookkeeping and its reset),
    where taking a kept one costs microseconds. The other half, at least, stays in the pool for sessions.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._on_commit: list[Callable[[], None]] = []
        self._pool = engine.sync_engine.pool
        self._kept: list[PoolProxiedConnection] = []  # idle, checked out of the pool for direct transactions
        self.keep_at_most = getattr(self._pool, "size", lambda: 0)() // 2

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

    @asynccontextmanager
    async def direct_transaction(self) -> AsyncIterator[DirectTransaction]:
        """A transaction run on the driver's connection (see `orrery_shared.db.direct`); same commit rules."""
        async with self._driver_connection() as driver, driver.transaction():
            tx = DirectTransaction(driver)
            yield tx
        if tx.published:
            for callback in self._on_commit:
                callback()

    @asynccontextmanager
    async def direct_statements(self) -> AsyncIterator[DirectTransaction]:
        """Statements on the driver's connection, each committed on its own (autocommit).

        For a unit of work that is a single statement, this costs its one round trip, where a transaction
        adds BEGIN and COMMIT. `publish` is refused, since an event must commit with its change; a statement that
        writes its event's outbox row itself can (`DirectTransaction.row_publishing`)."""
        async with self._driver_connection() as driver:
            await driver.set_autocommit(True)
            try:
                statements = DirectTransaction(driver, autocommit=True)
                yield statements
            finally:
                if not driver.closed:
                    await driver.set_autocommit(False)  # as the pool's other users expect it
        if statements.published:
            for callback in self._on_commit:
                callback()

    @property
    def kept_connections(self) -> int:
        """How many idle connections direct transactions hold out of the pool right now."""
        return len(self._kept)

    @asynccontextmanager
    async def _driver_connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """psycopg's own connection: a kept one, or one from the pool; kept again afterwards if it is idle and
        fewer than `keep_at_most` are, else given back to the pool (or dropped, when broken)."""
        proxied = await self._take_kept()
        if proxied is None:
            proxied = await greenlet_spawn(self._pool.connect)
        driver = proxied.driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        try:
            yield driver
        except psycopg.OperationalError:
            await greenlet_spawn(proxied.invalidate)  # a broken connection must not go back to the pool
            raise
        except BaseException:
            await greenlet_spawn(proxied.close)  # the pool's reset rolls back whatever was left open
            raise
        if (
            len(self._kept) < self.keep_at_most
            and not driver.closed
            and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        ):
            self._kept.append(proxied)
        else:
            await greenlet_spawn(proxied.close)

    async def _take_kept(self) -> PoolProxiedConnection | None:
        """The most recently kept connection that is still open (the pool's stale check, done here)."""
        while self._kept:
            proxied = self._kept.pop()
            driver = proxied.driver_connection
            assert isinstance(driver, psycopg.AsyncConnection)
            if not _closed_by_server(driver):
                return proxied
            await greenlet_spawn(proxied.invalidate)
        return None

    async def _release_kept(self) -> None:
        while self._kept:
            await greenlet_spawn(self._kept.pop().close)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self._release_kept()
        await self.engine.dispose()
