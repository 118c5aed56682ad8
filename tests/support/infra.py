"""Real Kafka, PostgreSQL and Redis for the test suite.

Endpoints are chosen in this order: those configured in the environment (ORRERY_KAFKA_BOOTSTRAP_SERVERS,
ORRERY_REDIS_URL, ORRERY_TEST_POSTGRES_ADMIN_URL), then testcontainers where a Docker engine answers, else the
project's own scripts, which install and start everything on loopback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orrery_shared.kafka import ensure_topics
from orrery_shared.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "infra"
SERVICE_ROLES = {"auth": "auth", "character-gen": "characters", "chat": "chat", "dossier": "dossier"}


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    redis_url: str
    postgres_admin_url: str  # a superuser, used only by tests to provision and inspect

    @property
    def _pg(self) -> tuple[str, int]:
        parts = urlsplit(self.postgres_admin_url)
        return parts.hostname or "127.0.0.1", parts.port or 5432

    def role_url(self, role: str, password: str | None = None) -> str:
        """SQLAlchemy URL logging in as a service role (roles and passwords as provisioned)."""
        host, port = self._pg
        return f"postgresql+psycopg://{role}:{password or role}@{host}:{port}/orrery"

    def service_env(self) -> dict[str, str]:
        """Environment variables pointing every service at these endpoints."""
        env = {"ORRERY_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "ORRERY_REDIS_URL": self.redis_url}
        for service, schema in SERVICE_ROLES.items():
            prefix = "ORRERY_" + service.upper().replace("-", "_")
            env[f"{prefix}_DATABASE_URL"] = self.role_url(f"orrery_{schema}")
        return env


def _docker_answers() -> bool:
    if os.environ.get("ORRERY_TEST_CONTAINERS", "auto") == "0" or not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


TEST_KAFKA_PORT, TEST_KAFKA_CONTROLLER_PORT = 29092, 29093


def _fresh_test_kafka() -> str:
    """A broker of the test suite's own, started empty.

    Services give their consumer groups the names they use in production, and a new group reads its topics
    from the start; on a broker shared with `make run`, or kept from earlier runs, they would first replay
    everything published before. A broker that is not running is wiped before it starts; one that is running
    (another test session's, on this machine) is shared as it is.
    """
    from tests.support.kafka_control import DisposableKafka
    from tests.support.platform import port_open

    kafka = DisposableKafka("kafka-test", TEST_KAFKA_PORT, TEST_KAFKA_CONTROLLER_PORT)
    if not port_open(TEST_KAFKA_PORT):
        kafka.stop()
        kafka.wipe()
        kafka.start()
    asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=kafka.bootstrap)))
    return kafka.bootstrap


def _local_scripts() -> Infra:
    subprocess.run(["bash", str(SCRIPTS / "up.sh")], check=True, env={**os.environ, "ORRERY_EXTERNAL_KAFKA": "1"})
    return Infra(
        kafka_bootstrap=_fresh_test_kafka(),
        redis_url="redis://127.0.0.1:" + os.environ.get("ORRERY_REDIS_PORT", "56379") + "/0",
        postgres_admin_url="postgresql://postgres@127.0.0.1:" + os.environ.get("ORRERY_PG_PORT", "55432") + "/orrery",
    )


def _containers(stack: list[object]) -> Infra:  # pragma: no cover - needs a Docker engine
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    pg = PostgresContainer("postgres:15", username="postgres", password="postgres", dbname="postgres")
    redis = RedisContainer("redis:7")
    kafka = KafkaContainer("apache/kafka:3.9.1").with_kraft()
    for container in (pg, redis, kafka):
        container.start()
        stack.append(container)
    host, port = pg.get_container_host_ip(), pg.get_exposed_port(5432)
    subprocess.run(
        ["bash", str(SCRIPTS / "postgres.sh"), "provision"],
        check=True,
        env={**os.environ, "PG_HOST": host, "ORRERY_PG_PORT": str(port), "PGPASSWORD": "postgres"},
    )
    return Infra(
        kafka_bootstrap=kafka.get_bootstrap_server(),
        redis_url=f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0",
        postgres_admin_url=f"postgresql://postgres:postgres@{host}:{port}/orrery",
    )


def _configured() -> Infra | None:
    kafka = os.environ.get("ORRERY_KAFKA_BOOTSTRAP_SERVERS")
    redis = os.environ.get("ORRERY_REDIS_URL")
    pg = os.environ.get("ORRERY_TEST_POSTGRES_ADMIN_URL")
    if kafka and redis and pg:
        return Infra(kafka, redis, pg)
    return None


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """The running infrastructure; environment variables for in-process settings point at it."""
    stack: list[object] = []
    found = _configured() or (_containers(stack) if _docker_answers() else _local_scripts())
    saved = dict(os.environ)
    os.environ.update(found.service_env())
    try:
        yield found
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for container in reversed(stack):
            container.stop()  # type: ignore[attr-defined]
