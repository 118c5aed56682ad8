"""Transactions on the driver's connection, and the pool both kinds share, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import psycopg
import pytest
import sqlalchemy as sa

from orrery_shared.db import Database
from orrery_shared.db.direct import OUTBOX_COLUMNS, OUTBOX_VALUES
from orrery_shared.events import UserRegistered
from tests.support.infra import Infra

pytestmark = pytest.mark.integration

INSERT_PROBE = "INSERT INTO probes (id, label) VALUES (%(id)s::uuid, %(label)s::text)"


async def _labels(db: Database) -> list[str]:
    async with db.direct_transaction() as tx:
        return [row.label for row in await tx.rows("SELECT label FROM probes ORDER BY label", {})]


async def _outbox_topics(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(sa.text("SELECT topic FROM outbox ORDER BY id"))).scalars())


async def test_a_direct_transaction_commits_its_rows_and_events_together_and_wakes_the_relay(
    scratch_db: Database,
) -> None:
    woken: list[bool] = []
    scratch_db.on_events_committed(lambda: woken.append(True))
    event = UserRegistered(user_id=uuid4(), username="ada", is_guest=False)
    async with scratch_db.direct_transaction() as tx:
        assert await tx.execute(INSERT_PROBE, {"id": uuid4(), "label": "kept"}) == 1
        await tx.publish(event)
    assert await _labels(scratch_db) == ["kept"]
    assert await _outbox_topics(scratch_db) == [event.TOPIC]
    assert woken == [True]
    async with scratch_db.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT event_id, key, payload, headers FROM outbox"))).one()
    assert row.event_id == event.event_id and row.key == event.partition_key()
    assert UserRegistered.model_validate_json(row.payload) == event
    assert row.headers["x-event-type"] == event.type


async def test_an_exception_rolls_a_direct_transaction_back_with_its_events(scratch_db: Database) -> None:
    woken: list[bool] = []
    scratch_db.on_events_committed(lambda: woken.append(True))
    with pytest.raises(RuntimeError):
        async with scratch_db.direct_transaction() as tx:
            await tx.execute(INSERT_PROBE, {"id": uuid4(), "label": "dropped"})
            await tx.publish(UserRegistered(user_id=uuid4(), username="bo", is_guest=True))
            raise RuntimeError("the effect failed")
    assert await _labels(scratch_db) == []
    assert await _outbox_topics(scratch_db) == []
    assert woken == []


async def test_rows_come_back_as_named_tuples_and_nulls_keep_their_type(scratch_db: Database) -> None:
    async with scratch_db.direct_transaction() as tx:
        await tx.execute(INSERT_PROBE, {"id": uuid4(), "label": None})
        row = await tx.row("SELECT id, label FROM probes", {})
        assert row is not None and row.label is None
        assert await tx.row("SELECT id FROM probes WHERE label = %(label)s::text", {"label": "none"}) is None


async def _terminate_backends(infra: Infra, role: str) -> int:
    def terminate() -> int:
        with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            ).fetchall()
        return len(rows)

    return await asyncio.to_thread(terminate)


async def test_pooled_connections_the_server_closed_are_replaced_before_use(scratch_db: Database, infra: Infra) -> None:
    # Fill the pool with idle connections, then have the server end every one of them (a restart, say).
    async def hold() -> None:
        async with scratch_db.direct_transaction() as tx:
            await tx.execute("SELECT pg_sleep(0.05)", {})

    await asyncio.gather(*(hold() for _ in range(3)))
    role = scratch_db.engine.url.username
    assert role is not None
    assert await _terminate_backends(infra, role) >= 3
    await asyncio.sleep(0.2)  # the goodbye reaches the sockets
    # Without the check at checkout, each of these would meet a closed connection and fail.
    for _ in range(3):
        async with scratch_db.direct_transaction() as tx:
            await tx.execute(INSERT_PROBE, {"id": uuid4(), "label": "direct"})
        async with scratch_db.transaction() as session_tx:
            await session_tx.session.execute(sa.text("SELECT 1"))
    assert await _labels(scratch_db) == ["direct"] * 3


async def test_a_broken_connection_is_not_returned_to_the_pool(scratch_db: Database, infra: Infra) -> None:
    role = scratch_db.engine.url.username
    assert role is not None

    with pytest.raises(psycopg.OperationalError):
        async with scratch_db.direct_transaction() as tx:
            await _terminate_backends(infra, role)  # the server ends this very connection mid-transaction
            await tx.execute("SELECT pg_sleep(0.2)", {})
    async with scratch_db.direct_transaction() as tx:
        assert await tx.row("SELECT 1 AS one", {}) is not None
    # None lost: whatever is still checked out is kept, idle.
    assert scratch_db.engine.pool.checkedout() == scratch_db.kept_connections  # type: ignore[attr-defined]


async def test_a_transaction_cancelled_mid_statement_leaves_the_pool_usable(scratch_db: Database) -> None:
    async def slow() -> None:
        async with scratch_db.direct_transaction() as tx:
            await tx.execute("SELECT pg_sleep(5)", {})

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(6):  # more than the pool holds: every connection handed out works
        async with scratch_db.direct_transaction() as tx:
            assert (await tx.row("SELECT 1 AS one", {})).one == 1
    # None lost: whatever is still checked out is kept, idle.
    assert scratch_db.engine.pool.checkedout() == scratch_db.kept_connections  # type: ignore[attr-defined]


async def test_statements_commit_on_their_own_and_the_connection_goes_back_as_it_came(scratch_db: Database) -> None:
    async with scratch_db.direct_statements() as statements:
        await statements.execute(INSERT_PROBE, {"id": uuid4(), "label": "on its own"})
        with pytest.raises(psycopg.errors.UniqueViolation):
            same = uuid4()
            await statements.execute(INSERT_PROBE, {"id": same, "label": "first"})
            await statements.execute(INSERT_PROBE, {"id": same, "label": "again"})
        with pytest.raises(RuntimeError, match="transaction"):
            await statements.publish(UserRegistered(user_id=uuid4(), username="cy", is_guest=True))
    # Each statement committed by itself: the failed one took nothing with it.
    assert await _labels(scratch_db) == ["first", "on its own"]
    assert await _outbox_topics(scratch_db) == []
    async with scratch_db.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver.autocommit is False  # the pool's other users get a transactional connection


async def test_a_statement_that_writes_its_own_outbox_row_publishes_on_its_own(scratch_db: Database) -> None:
    woken: list[bool] = []
    scratch_db.on_events_committed(lambda: woken.append(True))
    insert_and_publish = (
        f"WITH added AS ({INSERT_PROBE} ON CONFLICT DO NOTHING RETURNING label), "
        f"published AS (INSERT INTO {OUTBOX_COLUMNS} SELECT {OUTBOX_VALUES} FROM added) "
        "SELECT label FROM added"
    )
    event = UserRegistered(user_id=uuid4(), username="di", is_guest=False)
    probe = uuid4()
    async with scratch_db.direct_statements() as statements:
        row = await statements.row_publishing(insert_and_publish, {"id": probe, "label": "with event"}, event)
        assert row.label == "with event"
        # A statement whose change does not happen writes no event either.
        again = UserRegistered(user_id=uuid4(), username="di", is_guest=False)
        assert await statements.row_publishing(insert_and_publish, {"id": probe, "label": "dup"}, again) is None
    assert await _labels(scratch_db) == ["with event"]
    assert woken == [True]  # the relay is told once the statements are done
    async with scratch_db.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT event_id, key, payload, headers FROM outbox"))).one()
    assert row.event_id == event.event_id and row.key == event.partition_key()
    assert UserRegistered.model_validate_json(row.payload) == event
    assert row.headers["x-event-type"] == event.type


async def test_a_statement_cancelled_mid_flight_leaves_the_pool_usable(scratch_db: Database) -> None:
    async def slow() -> None:
        async with scratch_db.direct_statements() as statements:
            await statements.execute("SELECT pg_sleep(5)", {})

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(6):  # more than the pool holds: every connection handed out works, in a transaction
        async with scratch_db.direct_transaction() as tx:
            assert tx.conn.autocommit is False
            assert (await tx.row("SELECT 1 AS one", {})).one == 1
    # None lost: whatever is still checked out is kept, idle.
    assert scratch_db.engine.pool.checkedout() == scratch_db.kept_connections  # type: ignore[attr-defined]


async def _backend_pid(db: Database) -> int:
    async with db.direct_statements() as statements:
        return int((await statements.row("SELECT pg_backend_pid() AS pid", {})).pid)


async def test_direct_transactions_keep_idle_connections_for_the_next_but_leave_half_the_pool_to_sessions(
    scratch_db: Database,
) -> None:
    pool_size = scratch_db.engine.pool.size()  # type: ignore[attr-defined]
    assert scratch_db.keep_at_most == pool_size // 2 > 0

    # One after another: the same connection every time, kept between them.
    assert len({await _backend_pid(scratch_db) for _ in range(5)}) == 1
    assert scratch_db.kept_connections == 1

    # A burst uses the whole pool; afterwards at most half of it stays kept, the rest goes back.
    async def hold() -> None:
        async with scratch_db.direct_transaction() as tx:
            await tx.execute("SELECT pg_sleep(0.1)", {})

    await asyncio.gather(*(hold() for _ in range(pool_size)))
    assert scratch_db.kept_connections == scratch_db.keep_at_most
    assert scratch_db.engine.pool.checkedout() == scratch_db.keep_at_most  # type: ignore[attr-defined]

    # Sessions get every connection not kept, all at once.
    free = pool_size - scratch_db.keep_at_most
    entered = asyncio.Event()
    inside = 0

    async def session() -> None:
        nonlocal inside
        async with scratch_db.transaction() as tx:
            await tx.session.execute(sa.text("SELECT 1"))
            inside += 1
            if inside == free:
                entered.set()
            await asyncio.wait_for(entered.wait(), 5)

    await asyncio.wait_for(asyncio.gather(*(session() for _ in range(free))), 10)
