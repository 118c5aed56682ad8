"""Settings base: one class per service, each reading its own env prefix, failing fast on bad values."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TypeVar

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PASSWORD_MARK = "orrery_"


class Environment(StrEnum):
    DEV = "dev"
    PROD = "prod"


class KafkaSettings(BaseSettings):
    """Where the Kafka cluster is; shared by every service (prefix ORRERY_KAFKA_)."""

    model_config = SettingsConfigDict(env_prefix="ORRERY_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:19092", description="comma-separated host:port list")
    client_id_prefix: str = Field("orrery", description="prefix of every Kafka client id")
    create_topics: bool = Field(True, description="create the architecture's topics at start-up if missing")
    request_timeout_ms: int = Field(30_000, ge=1_000)
    # How soon a dead consumer's partitions (and the turns in them) go to another replica. The broker bounds it
    # (group.min.session.timeout.ms, 6000 by default); see bench/chat_failover.py for what it buys.
    session_timeout_ms: int = Field(6_000, ge=1_000, description="a consumer silent this long leaves its group")
    # The other replicas hear of a rebalance with their next heartbeat's answer: a short interval shortens that.
    heartbeat_interval_ms: int = Field(500, ge=100, description="how often a consumer says it is alive")
    group_instance_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="static membership: a stable name per replica (a StatefulSet pod's); restarted under the same "
        "name, a replica takes its partitions back without a rebalance",
    )


class RedisSettings(BaseSettings):
    """Where Redis is (prefix ORRERY_REDIS_)."""

    model_config = SettingsConfigDict(env_prefix="ORRERY_REDIS_", extra="ignore")

    url: str = Field("redis://127.0.0.1:56379/0", description="redis:// or rediss:// URL")


class ServiceSettings(BaseSettings):
    """Fields every service has; subclasses set `env_prefix` (ORRERY_<SERVICE>_) and add their own."""

    model_config = SettingsConfigDict(extra="ignore")

    environment: Environment = Field(Environment.DEV, validation_alias="ORRERY_ENV")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    max_body_bytes: int = Field(1_048_576, ge=1_024, description="largest accepted request body")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)


class DatabaseServiceSettings(ServiceSettings):
    """A service that owns a Postgres schema."""

    database_url: str = Field(description="postgresql+psycopg://role:password@host:port/db")
    db_schema: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    db_pool_size: int = Field(10, ge=1, le=100)

    @field_validator("database_url")
    @classmethod
    def _postgres_url_without_dev_password_in_prod(cls, url: str, info: ValidationInfo) -> str:
        if not url.startswith("postgresql+psycopg://"):
            raise ValueError("must start with postgresql+psycopg://")
        if info.data.get("environment") is Environment.PROD and f":{DEV_PASSWORD_MARK}" in url:
            raise ValueError("uses the development password; set a real one in production")
        return url


S = TypeVar("S", bound=BaseSettings)


def describe_validation_error(cls: type[BaseSettings], error: ValidationError) -> str:
    """One line naming the environment variable(s) at fault."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    parts = []
    for item in error.errors():
        loc = "_".join(str(p) for p in item["loc"]).upper()
        name = f"{prefix}{loc}" if loc else prefix.rstrip("_")
        parts.append(f"{name}: {item['msg']}")
    return "; ".join(parts)


def load_settings(cls: type[S]) -> S:
    """Build settings from the environment or stop the process with one clear line."""
    try:
        return cls()
    except ValidationError as error:
        print(f"configuration error: {describe_validation_error(cls, error)}", file=sys.stderr)
        raise SystemExit(2) from None
