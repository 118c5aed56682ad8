"""Conversations found by project: whether a project is someone else's when a turn names it, and whether a
deleted conversation leaves its project without any.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("conversations_by_project", "conversations", ["project_id", "user_id"])


def downgrade() -> None:
    op.drop_index("conversations_by_project", table_name="conversations")
