"""How far an interrupted attempt numbered its reply's stream: the next attempt numbers on from there even when
Redis lost the stream and another process takes the turn.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("turns", sa.Column("stream_seq", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("turns", "stream_seq")
