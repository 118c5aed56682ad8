"""Settings of the character-gen service (prefix ORRERY_CHARACTER_GEN_)."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from orrery_shared.settings import DatabaseServiceSettings, load_settings

PRESETS_DIR = Path(__file__).parent / "presets"
PROCEDURAL = "procedural"


class CharacterGenSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_CHARACTER_GEN_", extra="ignore")

    port: int = Field(8002, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_characters:orrery_characters@127.0.0.1:55432/orrery"
    db_schema: str = "characters"

    consumer_group: str = Field("character-gen", min_length=1, description="Kafka consumer group of the service")
    concurrency: int = Field(8, ge=1, le=256, description="spins handled at once per process (different users)")
    image_providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [PROCEDURAL],
        description="portrait providers tried in order, comma-separated (openai, leonardo, procedural, or any "
        "registered name); procedural is always the last resort",
    )
    image_timeout_s: float = Field(60.0, gt=0, le=600, description="time allowed to each image provider")
    image_size: int = Field(1024, ge=256, le=2048, description="requested portrait size in pixels (square)")
    max_portrait_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger provider images are refused")
    persona_max_tokens: int = Field(1_500, ge=200, le=16_000)
    persona_temperature: float = Field(0.9, ge=0, le=2)
    recent_window: int = Field(20, ge=0, le=1_000, description="'spin again' never repeats traits of this many")
    traits_seed: int | None = Field(None, description="makes trait draws reproducible per request (tests, demos)")
    presets_dir: Path = Field(PRESETS_DIR, description="folder of Character Card V2 JSON files loaded at start")
    # Above max_import_bytes by room for a multipart form around the card.
    max_body_bytes: int = Field(4 * 1024 * 1024 + 64 * 1024, ge=1024, description="largest accepted request body")
    max_import_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="largest card accepted by POST /characters/import"
    )
    max_import_pixels: int = Field(4096 * 4096, ge=64 * 64, description="largest PNG card image (width * height)")
    portrait_max_age_s: int = Field(86_400, ge=0, description="Cache-Control max-age of portraits")

    @field_validator("image_providers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("image_providers")
    @classmethod
    def _procedural_last(cls, providers: list[str]) -> list[str]:
        ordered = list(dict.fromkeys(p.lower() for p in providers if p.lower() != PROCEDURAL))
        return [*ordered, PROCEDURAL]


def load() -> CharacterGenSettings:
    return load_settings(CharacterGenSettings)
