"""Alembic for every service: one shared env, each service's own versions folder and version table."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ENV_DIR = Path(__file__).parent / "alembic"


def alembic_config(database_url: str, schema: str, versions_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ENV_DIR))
    cfg.set_main_option("version_locations", str(versions_dir))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(database_url: str, schema: str, versions_dir: Path, revision: str = "head") -> None:
    """Bring `schema` to `revision` (a prestart step, never run at import)."""
    command.upgrade(alembic_config(database_url, schema, versions_dir), revision)


def downgrade(database_url: str, schema: str, versions_dir: Path, revision: str) -> None:
    command.downgrade(alembic_config(database_url, schema, versions_dir), revision)
