"""A throwaway schema and role per test, migrated with the shared Alembic environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from orrery_shared.db import Database, make_engine
from orrery_shared.db.migrations import upgrade
from tests.support.infra import Infra

VERSIONS = Path(__file__).parent / "versions"


@pytest.fixture
async def scratch_db(infra: Infra) -> AsyncIterator[Database]:
    name = "t_" + uuid4().hex[:12]
    with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
        admin.execute(f"GRANT CONNECT ON DATABASE orrery TO {name}")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    url = infra.role_url(name)
    await asyncio.to_thread(upgrade, url, name, VERSIONS)
    db = Database(make_engine(url, name, pool_size=5))
    try:
        yield db
    finally:
        await db.dispose()
        with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")
            admin.execute(f"DROP OWNED BY {name}")
            admin.execute(f"DROP ROLE {name}")
