"""Conversations as trees: every message has a parent, a conversation has an active leaf, and the rolling
summary belongs to the message it reaches (it covers the path from the root to that message, so every branch
below it shares it and no other branch sees it).

Existing conversations become one path: each message's parent is the one before it, the last one is the leaf,
and the conversation's summary moves to the message it reached.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("characters", sa.Column("alternate_greetings", JSONB, nullable=False, server_default="[]"))
    op.add_column("messages", sa.Column("parent_id", sa.Uuid, nullable=True))
    op.add_column("messages", sa.Column("active_child_id", sa.Uuid, nullable=True))
    op.add_column("messages", sa.Column("summary", sa.Text, nullable=True))
    op.add_column("conversations", sa.Column("active_leaf_id", sa.Uuid, nullable=True))
    op.add_column("turns", sa.Column("mode", sa.Text, nullable=False, server_default="reply"))
    op.add_column("turns", sa.Column("reply_parent_id", sa.Uuid, nullable=True))
    op.add_column("turns", sa.Column("target_message_id", sa.Uuid, nullable=True))
    op.add_column("turns", sa.Column("replaced_turn_ids", ARRAY(sa.Uuid), nullable=False, server_default="{}"))
    op.execute(
        """
        UPDATE messages m SET parent_id = p.message_id
        FROM messages p
        WHERE p.conversation_id = m.conversation_id AND p.seq = m.seq - 1
        """
    )
    op.execute(
        """
        UPDATE messages p SET active_child_id = c.message_id
        FROM messages c WHERE c.parent_id = p.message_id
        """
    )
    op.execute(
        """
        UPDATE conversations c SET active_leaf_id = m.message_id
        FROM messages m WHERE m.conversation_id = c.conversation_id AND m.seq = c.last_seq
        """
    )
    op.execute(
        """
        UPDATE messages m SET summary = c.memory_summary
        FROM conversations c
        WHERE m.conversation_id = c.conversation_id AND m.seq = c.memory_upto_seq AND c.memory_summary <> ''
        """
    )
    op.execute("UPDATE turns SET reply_parent_id = user_message_id")
    # Editing a greeting is a turn with no user message.
    op.alter_column("turns", "user_message_id", nullable=True)
    op.create_index("messages_children", "messages", ["parent_id", "seq"])
    op.create_index(
        "messages_roots", "messages", ["conversation_id", "seq"], postgresql_where=sa.text("parent_id IS NULL")
    )
    op.drop_column("conversations", "memory_summary")
    op.drop_column("conversations", "memory_upto_seq")


def downgrade() -> None:
    op.execute("DELETE FROM turns WHERE user_message_id IS NULL")
    op.alter_column("turns", "user_message_id", nullable=False)
    op.add_column("conversations", sa.Column("memory_summary", sa.Text, nullable=False, server_default=""))
    op.add_column("conversations", sa.Column("memory_upto_seq", sa.Integer, nullable=False, server_default="0"))
    op.drop_index("messages_roots", "messages")
    op.drop_index("messages_children", "messages")
    for column in ("replaced_turn_ids", "target_message_id", "reply_parent_id", "mode"):
        op.drop_column("turns", column)
    op.drop_column("conversations", "active_leaf_id")
    for column in ("summary", "active_child_id", "parent_id"):
        op.drop_column("messages", column)
    op.drop_column("characters", "alternate_greetings")
