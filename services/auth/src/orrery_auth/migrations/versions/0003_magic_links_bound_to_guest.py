"""A magic link remembers the guest that asked for it: only that guest is folded into the account.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("magic_links", sa.Column("guest_id", sa.Uuid, nullable=True))


def downgrade() -> None:
    op.drop_column("magic_links", "guest_id")
