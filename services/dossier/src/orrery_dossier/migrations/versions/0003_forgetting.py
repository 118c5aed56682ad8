"""Forgetting: deleted conversations are remembered (by id only) so that their late turns are not kept, and
waiting turns are found by conversation.

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
    op.create_table(
        "forgotten_conversations",
        sa.Column("conversation_id", sa.Uuid, primary_key=True),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("pending_turns_by_conversation", "pending_turns", ["conversation_id"])


def downgrade() -> None:
    op.drop_index("pending_turns_by_conversation", table_name="pending_turns")
    op.drop_table("forgotten_conversations")
