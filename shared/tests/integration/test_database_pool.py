"""A service's connection pool against a real PostgreSQL: connections the server closed are replaced before
use, and none is lost to a broken or cancelled transaction."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from orrery_shared.db import Database
from tests.support.infra import Infra

pytestmark = pytest.mark.integration

INSERT_PROBE = sa.text("INSERT INTO probes (id, label) VALUES (:id, :label)")


async def _labels(db: Database) -> list[str]:
    async with db.transaction() as tx:
        return list((await tx.session.execute(sa.text("SELECT label FROM probes ORDER BY label"))).scalars())


async def _terminate_backends(infra: Infra, role: str) -> int:
    def terminate() -> int:
        with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            ).fetchall()
        return len(rows)

    return await asyncio.to_thread(terminate)


async def _sleep_in_transaction(db: Database, seconds: float) -> None:
    async with db.transaction() as tx:
        await tx.session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})


async def test_pooled_connections_the_server_closed_are_replaced_before_use(scratch_db: Database, infra: Infra) -> None:
    # Fill the pool with idle connections, then have the server end every one of them (a restart, say).
    await asyncio.gather(*(_sleep_in_transaction(scratch_db, 0.05) for _ in range(3)))
    role = scratch_db.engine.url.username
    assert role is not None
    assert await _terminate_backends(infra, role) >= 3
    await asyncio.sleep(0.2)  # the goodbye reaches the sockets
    # Without the check at checkout, each of these would meet a closed connection and fail.
    for _ in range(3):
        async with scratch_db.transaction() as tx:
            await tx.session.execute(INSERT_PROBE, {"id": uuid4(), "label": "after"})
    assert await _labels(scratch_db) == ["after"] * 3


async def test_a_connection_broken_mid_transaction_is_not_returned_to_the_pool(
    scratch_db: Database, infra: Infra
) -> None:
    role = scratch_db.engine.url.username
    assert role is not None
    with pytest.raises(sa_exc.OperationalError):
        async with scratch_db.transaction() as tx:
            await tx.session.execute(sa.text("SELECT 1"))
            await _terminate_backends(infra, role)  # the server ends this very connection mid-transaction
            await tx.session.execute(sa.text("SELECT pg_sleep(0.2)"))
    async with scratch_db.transaction() as tx:
        assert await tx.session.scalar(sa.text("SELECT 1")) == 1
    assert scratch_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_transaction_cancelled_mid_statement_leaves_the_pool_usable(scratch_db: Database) -> None:
    task = asyncio.create_task(_sleep_in_transaction(scratch_db, 5))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(6):  # more than the pool holds: every connection handed out works
        async with scratch_db.transaction() as tx:
            assert await tx.session.scalar(sa.text("SELECT 1")) == 1
    assert scratch_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
