"""Alembic revisions of the dossier schema (run with `python -m orrery_dossier migrate`)."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
