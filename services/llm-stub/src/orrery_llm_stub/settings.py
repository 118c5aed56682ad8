"""Stub server settings (env prefix ORRERY_STUB_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StubSettings(BaseSettings):
    """How the stub listens and how fast it "thinks"."""

    model_config = SettingsConfigDict(env_prefix="ORRERY_STUB_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(18080, ge=0, le=65535)
    ttft_ms: float = Field(300.0, ge=0, description="delay before the first token")
    tokens_per_second: float = Field(40.0, ge=0, description="streaming pace; 0 streams as fast as possible")
    reply_tokens: int | None = Field(None, ge=1, description="pad or cut every reply to this many tokens")
    models: list[str] = Field(default_factory=lambda: ["orrery-stub-1"], description="listed by /v1/models")
    record_requests: bool = True
    max_recorded_requests: int = Field(1000, ge=0, description="oldest recorded requests are dropped first")
    log_level: str = Field("warning", pattern="^(debug|info|warning|error|critical)$")
    access_log: bool = False
    backlog: int = Field(4096, ge=1)
