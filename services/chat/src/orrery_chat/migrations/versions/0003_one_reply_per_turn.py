"""At most one assistant message per turn: the database refuses a second reply, whatever attempts race.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Replies stored twice before the index existed are kept, as messages, but only one stays the turn's: the one
# the turn records as its reply, or else the earliest. The others lose their turn_id.
DETACH_EXTRA_REPLIES = """
UPDATE messages m SET turn_id = NULL
WHERE m.role = 'assistant' AND m.turn_id IS NOT NULL
  AND m.message_id <> COALESCE(
      (SELECT t.assistant_message_id FROM turns t
       WHERE t.turn_id = m.turn_id
         AND EXISTS (SELECT 1 FROM messages r WHERE r.message_id = t.assistant_message_id AND r.role = 'assistant')),
      (SELECT o.message_id FROM messages o
       WHERE o.turn_id = m.turn_id AND o.role = 'assistant' ORDER BY o.seq LIMIT 1)
  )
"""


def upgrade() -> None:
    op.execute(DETACH_EXTRA_REPLIES)
    op.create_index(
        "messages_one_reply_per_turn",
        "messages",
        ["turn_id"],
        unique=True,
        postgresql_where="role = 'assistant' AND turn_id IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("messages_one_reply_per_turn", table_name="messages")
