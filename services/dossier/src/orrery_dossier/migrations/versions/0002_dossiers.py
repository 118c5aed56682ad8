"""Dossiers per project, their versions, turns waiting for extraction, and merged users.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dossiers",
        sa.Column("project_id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        # 0 while the project only has turns waiting; the dossier exists from version 1 on.
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("snapshot", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("overrides", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("known_terms", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("pending_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pending_score", sa.Float, nullable=False, server_default="0"),
        sa.Column("pending_chars", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pending_terms", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("oldest_pending_at", sa.DateTime(timezone=True)),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("retry_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("lease_token", sa.Uuid),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("version >= 0", name="dossiers_version_not_negative"),
    )
    op.create_index(
        "dossiers_by_user",
        "dossiers",
        ["user_id", sa.text("updated_at DESC")],
        postgresql_where=sa.text("version > 0"),
    )
    op.create_index("dossiers_due", "dossiers", ["due_at"], postgresql_where=sa.text("due_at IS NOT NULL"))
    op.create_index("dossiers_owner", "dossiers", ["user_id"])

    op.create_table(
        "dossier_versions",
        sa.Column("project_id", sa.Uuid, sa.ForeignKey("dossiers.project_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("snapshot", JSONB, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("turn_ids", ARRAY(sa.Uuid), nullable=False, server_default="{}"),
        sa.Column("edited_by", sa.Uuid),
        sa.Column("changed_sections", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("source IN ('extraction', 'user')", name="dossier_versions_source"),
    )

    op.create_table(
        "pending_turns",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("project_id", sa.Uuid, sa.ForeignKey("dossiers.project_id", ondelete="CASCADE"), nullable=False),
        sa.Column("turn_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("conversation_id", sa.Uuid, nullable=False),
        sa.Column("user_text", sa.Text, nullable=False),
        sa.Column("assistant_text", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("terms", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("pending_turns_by_project", "pending_turns", ["project_id", "seq"])

    op.create_table(
        "merged_users",
        sa.Column("from_user_id", sa.Uuid, primary_key=True),
        sa.Column("to_user_id", sa.Uuid, nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("merged_users")
    op.drop_table("pending_turns")
    op.drop_table("dossier_versions")
    op.drop_table("dossiers")
