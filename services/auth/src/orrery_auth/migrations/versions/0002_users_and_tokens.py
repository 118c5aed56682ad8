"""Users, magic links and refresh-token families.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("username", sa.Text, nullable=False),
        # Lower-cased at the edge; NULL for guests.
        sa.Column("email", sa.Text, nullable=True, unique=True),
        sa.Column("is_guest", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        # A guest that became (part of) an account; its tokens stop working.
        sa.Column("merged_into", sa.Uuid, sa.ForeignKey("users.id"), nullable=True),
        sa.CheckConstraint("is_guest = (email IS NULL)", name="guests_have_no_email"),
        sa.CheckConstraint("merged_into IS NULL OR is_guest", name="only_guests_merge"),
    )
    op.create_table(
        "magic_links",
        # Only the SHA-256 of the token is kept: a database leak yields no usable link.
        sa.Column("token_hash", sa.LargeBinary, primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("magic_links_by_email", "magic_links", ["email"])
    op.create_table(
        "refresh_families",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text, nullable=True),
    )
    op.create_index("refresh_families_by_user", "refresh_families", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary, primary_key=True),
        sa.Column("family_id", sa.Uuid, sa.ForeignKey("refresh_families.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        # Set when rotated: presenting it again is a replay and ends the family.
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("refresh_tokens_by_family", "refresh_tokens", ["family_id"])


def downgrade() -> None:
    op.drop_table("refresh_tokens")
    op.drop_table("refresh_families")
    op.drop_table("magic_links")
    op.drop_table("users")
