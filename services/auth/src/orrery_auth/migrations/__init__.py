"""Alembic revisions of the auth schema (run with `python -m orrery_auth migrate`)."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
