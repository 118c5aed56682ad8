"""Each service migrates its own schema and its database role cannot touch another service's."""

from __future__ import annotations

import asyncio
import importlib
import itertools

import psycopg
import pytest

from orrery_shared.db.migrations import upgrade
from tests.support.infra import SERVICE_ROLES, Infra

pytestmark = pytest.mark.integration


def _psycopg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="module")
def migrated(infra: Infra) -> Infra:
    for service, schema in SERVICE_ROLES.items():
        versions = importlib.import_module(f"orrery_{service.replace('-', '_')}.migrations").VERSIONS
        asyncio.run(asyncio.to_thread(upgrade, infra.role_url(f"orrery_{schema}"), schema, versions))
    return infra


@pytest.mark.parametrize("schema", sorted(SERVICE_ROLES.values()))
def test_a_service_role_uses_its_own_schema(migrated: Infra, schema: str) -> None:
    with psycopg.connect(_psycopg_url(migrated.role_url(f"orrery_{schema}"))) as conn:
        assert conn.execute("SELECT current_schema()").fetchone() == (schema,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() is not None
        version = conn.execute(f"SELECT version_num FROM {schema}.alembic_version").fetchone()
        assert version is not None


@pytest.mark.parametrize(("own", "other"), [p for p in itertools.permutations(sorted(SERVICE_ROLES.values()), 2)])
def test_a_service_role_cannot_read_or_write_another_services_schema(migrated: Infra, own: str, other: str) -> None:
    with psycopg.connect(_psycopg_url(migrated.role_url(f"orrery_{own}")), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for schema {other}"):
            conn.execute(f"SELECT * FROM {other}.outbox")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"CREATE TABLE {other}.intruder (x int)")


def test_a_service_role_cannot_create_objects_in_the_public_schema(migrated: Infra) -> None:
    url = _psycopg_url(migrated.role_url("orrery_chat"))
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE public.intruder (x int)")
