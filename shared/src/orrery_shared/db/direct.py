"""Transactions on the driver's own connection, for the statements on a service's hot path.

Through SQLAlchemy a statement costs a few hundred microseconds of Python before and after its round trip
(building and compiling it, the greenlet bridge, result processing); a session adds as much again per
transaction. Where that is most of the work, as in chat's few statements before a reply's first token, the
statements are SQL text run by psycopg itself: psycopg prepares a statement server-side once it has run a few
times on a connection. The connection comes from the service's one pool, so both kinds of transaction share
its size and its stale-connection check (`Database` keeps some of them out of the pool between direct uses).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb

from orrery_shared.db.outgoing import outbox_row
from orrery_shared.events import Event

# An event's outbox row as a statement's own part: `INSERT INTO outbox ... SELECT OUTBOX_VALUES FROM <source>` in a
# WITH query writes it exactly when its source has rows, in the statement that makes the change it describes.
OUTBOX_COLUMNS = "outbox (event_id, topic, key, payload, headers)"
OUTBOX_VALUES = (
    "%(outbox_event_id)s::uuid, %(outbox_topic)s::text, %(outbox_key)s::text, %(outbox_payload)s::text, "
    "%(outbox_headers)s::jsonb"
)
INSERT_OUTBOX = f"INSERT INTO {OUTBOX_COLUMNS} VALUES ({OUTBOX_VALUES})"


def outbox_params(event: Event) -> dict[str, Any]:
    """The parameters OUTBOX_VALUES names, for `event`."""
    row = outbox_row(event)
    return {
        "outbox_event_id": row["event_id"],
        "outbox_topic": row["topic"],
        "outbox_key": row["key"],
        "outbox_payload": row["payload"],
        "outbox_headers": Jsonb(row["headers"]),
    }


class DirectTransaction:
    """One transaction: statements with `%(name)s` parameters, rows as named tuples, events to publish.

    With `autocommit`, each statement is a transaction of its own (see `Database.direct_statements`)."""

    def __init__(self, conn: AsyncConnection[Any], *, autocommit: bool = False) -> None:
        self.conn = conn
        self.autocommit = autocommit
        self.published: list[Event] = []

    async def rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        async with self.conn.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall()

    async def row(self, sql: str, params: dict[str, Any]) -> Any:
        async with self.conn.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchone()

    async def execute(self, sql: str, params: dict[str, Any]) -> int:
        """Run a statement without rows; returns how many rows it changed."""
        cursor = await self.conn.execute(sql, params)
        return cursor.rowcount

    async def publish(self, event: Event) -> None:
        """Record `event` in the outbox; it reaches Kafka only if this transaction commits."""
        if self.autocommit:
            raise RuntimeError("an event is published with the change it describes, in a transaction")
        await self.execute(INSERT_OUTBOX, outbox_params(event))
        self.published.append(event)

    async def row_publishing(self, sql: str, params: dict[str, Any], event: Event) -> Any:
        """Run `sql`, a statement that writes `event`'s outbox row itself (see OUTBOX_VALUES), and return its
        first row. The event commits with the change as one statement, so this works in autocommit too. A
        statement that returns no row is taken to have written no outbox row either (it changed nothing)."""
        row = await self.row(sql, {**params, **outbox_params(event)})
        if row is not None:
            self.published.append(event)
        return row
