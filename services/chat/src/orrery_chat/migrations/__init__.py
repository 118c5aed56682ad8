"""Alembic revisions of the chat schema (run with `python -m orrery_chat migrate`)."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
