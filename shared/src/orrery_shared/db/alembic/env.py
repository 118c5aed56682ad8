"""Alembic environment shared by every service; the schema and URL come from the caller's Config."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.pool import NullPool

config = context.config
schema: str = config.attributes["schema"]
url: str = config.attributes["database_url"]

engine = sa.create_engine(url, poolclass=NullPool, connect_args={"options": f"-csearch_path={schema}"})
with engine.connect() as connection:
    # Replicas starting together must not migrate concurrently.
    connection.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"migrate:{schema}"})
    connection.commit()
    try:
        context.configure(connection=connection, version_table_schema=schema, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"migrate:{schema}"})
        connection.commit()
engine.dispose()
