"""The chat schema's tables (SQLAlchemy Core); migrations/versions creates them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

# Chat's own copy of every character, built from character.created (never read from character-gen).
characters = sa.Table(
    "characters",
    metadata,
    sa.Column("character_id", sa.Uuid, primary_key=True),
    sa.Column("owner_user_id", sa.Uuid, nullable=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("planet", sa.Text, nullable=False),
    sa.Column("sex", sa.Text, nullable=False),
    sa.Column("species", sa.Text, nullable=False),
    sa.Column("archetype", sa.Text, nullable=False),
    sa.Column("personality", sa.Text, nullable=False),
    sa.Column("backstory", sa.Text, nullable=False),
    sa.Column("speaking_style", sa.Text, nullable=False),
    sa.Column("greeting", sa.Text, nullable=False),
    sa.Column("alternate_greetings", JSONB, nullable=False, server_default="[]"),
    sa.Column("portrait_url", sa.Text, nullable=False, server_default=""),
    sa.Column("tags", JSONB, nullable=False, server_default="[]"),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("conversation_id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, nullable=False),
    sa.Column("character_id", sa.Uuid, nullable=False),
    sa.Column("project_id", sa.Uuid, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="active"),
    # The leaf of the path the user sees and the prompt is built from (see orrery_chat.domain).
    sa.Column("active_leaf_id", sa.Uuid, nullable=True),
    sa.Column("end_summary", sa.Text, nullable=True),
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("last_message_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("ended_at", TS, nullable=True),
    sa.Index("conversations_by_project", "project_id", "user_id"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("message_id", sa.Uuid, primary_key=True),
    sa.Column(
        "conversation_id",
        sa.Uuid,
        sa.ForeignKey("conversations.conversation_id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The order messages were created in; a message's place in the conversation is its parent.
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("parent_id", sa.Uuid, nullable=True),  # None for a first message (the greeting and its alternatives)
    sa.Column("active_child_id", sa.Uuid, nullable=True),  # the child most recently on the active path
    # The rolling summary of the path from the root down to this message (set on the message a fold reached).
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("turn_id", sa.Uuid, nullable=True),
    sa.Column("client_msg_id", sa.Text, nullable=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=True),
    sa.Column("completion_tokens", sa.Integer, nullable=True),
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("conversation_id", "seq"),
    sa.Index("messages_children", "parent_id", "seq"),
    sa.Index("messages_roots", "conversation_id", "seq", postgresql_where=sa.text("parent_id IS NULL")),
    # A turn has at most one reply, however many attempts raced to store one.
    sa.Index(
        "messages_one_reply_per_turn",
        "turn_id",
        unique=True,
        postgresql_where=sa.text("role = 'assistant' AND turn_id IS NOT NULL"),
    ),
)

# One row per turn: what makes a redelivered turn_requested idempotent.
turns = sa.Table(
    "turns",
    metadata,
    sa.Column("turn_id", sa.Uuid, primary_key=True),
    sa.Column("conversation_id", sa.Uuid, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # processing | completed | cancelled | failed
    sa.Column("mode", sa.Text, nullable=False, server_default="reply"),  # reply | regenerate | continue | edit
    sa.Column("reply_parent_id", sa.Uuid, nullable=True),  # the message the reply answers (its parent)
    sa.Column("target_message_id", sa.Uuid, nullable=True),  # the message continued or edited
    # The turns of the branch a regenerate or an edit left, kept for a retry's completed event.
    sa.Column("replaced_turn_ids", ARRAY(sa.Uuid), nullable=False, server_default="{}"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    # The last seq an interrupted attempt wrote: the next one numbers on from it (see handlers.handle_turn).
    sa.Column("stream_seq", sa.Integer, nullable=True),
    sa.Column("user_message_id", sa.Uuid, nullable=True),  # None only for an edit of a greeting
    sa.Column("assistant_message_id", sa.Uuid, nullable=True),
    sa.Column("failure", sa.Text, nullable=True),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", TS, nullable=True),
)
