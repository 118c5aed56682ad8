"""Settings of the gateway (prefix ORRERY_GATEWAY_)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orrery_shared.settings import ServiceSettings, load_settings

WEB_DIR = Path(__file__).parent / "web"


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_GATEWAY_", extra="ignore")

    port: int = Field(8000, ge=1, le=65535)
    auth_url: str = Field("http://127.0.0.1:8001", description="the auth service")
    characters_url: str = Field("http://127.0.0.1:8002", description="character-gen's read API")
    chat_url: str = Field("http://127.0.0.1:8003", description="chat's read API")
    dossier_url: str = Field("http://127.0.0.1:8004", description="dossier's read API")
    upstream_timeout_seconds: float = Field(10.0, gt=0)
    # The largest upload a service takes (a character card, 4 MiB) and room for a multipart form around it.
    max_body_bytes: int = Field(4 * 1024 * 1024 + 64 * 1024, ge=1024, description="largest accepted request body")
    max_frame_bytes: int = Field(64 * 1024, ge=1024, description="largest WebSocket frame accepted")
    max_message_chars: int = Field(4000, ge=1, le=16_000, description="longest chat message accepted")
    max_sockets_per_user: int = Field(20, ge=1, description="open sockets per user, across every instance")
    messages_per_minute: int = Field(30, ge=1, description="chat messages per user per minute")
    spins_per_hour: int = Field(30, ge=1, description="roulette spins per user per hour")
    imports_per_hour: int = Field(30, ge=1, description="character card and lorebook imports per user per hour")
    exports_per_hour: int = Field(6, ge=1, description="whole-account exports (GET /api/me/export) per user per hour")
    idle_timeout_seconds: float = Field(300.0, gt=0, description="close a socket silent for this long")
    ping_interval_seconds: float = Field(20.0, gt=0, description="server pings keep idle sockets alive")
    turn_timeout_seconds: float = Field(120.0, gt=0, description="give up on a turn whose stream stays silent")
    turn_delay_notice_seconds: float = Field(
        5.0, gt=0, description="tell a socket client (turn.delayed) when a turn's stream is silent this long"
    )
    shutdown_grace_seconds: float = Field(10.0, ge=0, description="how long open replies may finish at shutdown")
    sse_wait_seconds: float = Field(120.0, gt=0, description="longest a POST /api/chat waits for a reply")
    web_dir: Path = Field(WEB_DIR, description="static files of the web client")
    dev_mailbox_url: str | None = Field(None, description="link shown by the sign-in page in development")


def load() -> GatewaySettings:
    return load_settings(GatewaySettings)
