"""Alembic revisions of the characters schema (run with `python -m orrery_character_gen migrate`)."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
