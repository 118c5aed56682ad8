"""A scratch schema for testing the messaging machinery: outbox, inbox and a table of applied effects.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from orrery_shared.db.tables import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op)
    op.create_table("probes", sa.Column("id", sa.Uuid, primary_key=True), sa.Column("label", sa.Text))
    # No unique constraint on purpose: a duplicated effect must be visible as a second row.
    op.create_table("applied", sa.Column("user_id", sa.Uuid, nullable=False), sa.Column("event_id", sa.Uuid))


def downgrade() -> None:
    op.drop_table("applied")
    op.drop_table("probes")
