"""Settings of the chat service (prefix ORRERY_CHAT_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orrery_shared.settings import DatabaseServiceSettings, load_settings


class ChatSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_CHAT_", extra="ignore")

    port: int = Field(8003, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_chat:orrery_chat@127.0.0.1:55432/orrery"
    db_schema: str = "chat"


def load() -> ChatSettings:
    return load_settings(ChatSettings)
