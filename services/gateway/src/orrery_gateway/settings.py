"""Settings of the gateway (prefix ORRERY_GATEWAY_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orrery_shared.settings import ServiceSettings, load_settings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_GATEWAY_", extra="ignore")

    port: int = Field(8000, ge=1, le=65535)


def load() -> GatewaySettings:
    return load_settings(GatewaySettings)
