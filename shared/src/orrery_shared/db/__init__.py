"""Postgres: engine per service schema, transactions with outbox publishing, inbox dedupe, migrations."""

from orrery_shared.db.database import Database, Transaction, make_engine
from orrery_shared.db.inbox import idempotent
from orrery_shared.db.outbox import OutboxRelay

__all__ = ["Database", "OutboxRelay", "Transaction", "idempotent", "make_engine"]
