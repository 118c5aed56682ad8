"""Settings of the auth service (prefix ORRERY_AUTH_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orrery_shared.settings import DatabaseServiceSettings, load_settings


class AuthSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_AUTH_", extra="ignore")

    port: int = Field(8001, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_auth:orrery_auth@127.0.0.1:55432/orrery"
    db_schema: str = "auth"


def load() -> AuthSettings:
    return load_settings(AuthSettings)
