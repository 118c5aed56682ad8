"""Settings of the chat service (prefix ORRERY_CHAT_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orrery_shared.settings import DatabaseServiceSettings, load_settings


class ChatSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_CHAT_", extra="ignore")

    port: int = Field(8003, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_chat:orrery_chat@127.0.0.1:55432/orrery"
    db_schema: str = "chat"
    consumer_group_prefix: str = Field("chat", pattern=r"^[A-Za-z0-9._-]+$", description="prefix of consumer groups")
    turn_concurrency: int = Field(256, ge=1, le=10_000, description="turns answered at once per process")
    memory_window_tokens: int = Field(1500, ge=100, description="token budget of recent messages in a prompt")
    memory_fold_share: float = Field(0.5, gt=0, lt=1, description="window share kept when folding into the summary")
    character_wait_seconds: float = Field(5.0, ge=0, description="how long a turn waits for an unknown character")
    turn_expiry_seconds: float = Field(600.0, gt=0, description="older turns fail as expired, unanswered")
    stream_active_ttl_seconds: int = Field(3600, ge=60, description="expiry of a turn's token stream while open")
    stream_finished_ttl_seconds: int = Field(300, ge=10, description="expiry of a turn's token stream after its end")


def load() -> ChatSettings:
    return load_settings(ChatSettings)
