"""Settings of the character-gen service (prefix ORRERY_CHARACTER_GEN_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orrery_shared.settings import DatabaseServiceSettings, load_settings


class CharacterGenSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_CHARACTER_GEN_", extra="ignore")

    port: int = Field(8002, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_characters:orrery_characters@127.0.0.1:55432/orrery"
    db_schema: str = "characters"


def load() -> CharacterGenSettings:
    return load_settings(CharacterGenSettings)
