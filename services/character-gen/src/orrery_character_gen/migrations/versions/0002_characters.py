"""Characters, their portraits, spin outcomes and guest merges.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "characters",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("owner_user_id", sa.Uuid, nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("request_id", sa.Uuid, nullable=True, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("planet", sa.Text, nullable=False),
        sa.Column("sex", sa.Text, nullable=False),
        sa.Column("species", sa.Text, nullable=False),
        sa.Column("archetype", sa.Text, nullable=False),
        sa.Column("personality", sa.Text, nullable=False),
        sa.Column("backstory", sa.Text, nullable=False),
        sa.Column("speaking_style", sa.Text, nullable=False),
        sa.Column("greeting", sa.Text, nullable=False),
        sa.Column("image_prompt", sa.Text, nullable=False, server_default=""),
        sa.Column("tags", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("portrait_provider", sa.Text, nullable=False),
        sa.Column("card_extras", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("preset_hash", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
        sa.CheckConstraint("source IN ('generated', 'preset', 'imported')", name="characters_source_known"),
        sa.CheckConstraint("(source = 'preset') = (owner_user_id IS NULL)", name="characters_presets_unowned"),
    )
    # "the caller's characters, newest first" and "the user's last N trait combinations"
    op.create_index(
        "characters_by_owner_newest", "characters", ["owner_user_id", sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index("characters_presets", "characters", ["name"], postgresql_where=sa.text("owner_user_id IS NULL"))
    op.create_table(
        "portraits",
        sa.Column("character_id", sa.Uuid, sa.ForeignKey("characters.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("png", sa.LargeBinary, nullable=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "spin_requests",
        sa.Column("request_id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("character_id", sa.Uuid, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("retryable", sa.Boolean, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('created', 'failed')", name="spin_requests_status_known"),
    )
    op.create_table(
        "user_merges",
        sa.Column("from_user_id", sa.Uuid, primary_key=True),
        sa.Column("to_user_id", sa.Uuid, nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("user_merges")
    op.drop_table("spin_requests")
    op.drop_table("portraits")
    op.drop_index("characters_presets", table_name="characters")
    op.drop_index("characters_by_owner_newest", table_name="characters")
    op.drop_table("characters")
