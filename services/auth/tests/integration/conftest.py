"""The auth service running in-process on a loopback port, against real PostgreSQL, Redis, Kafka and SMTP.

The schema is a throwaway one (own role, like a service's), migrated with `python -m orrery_auth migrate`.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import httpx
import psycopg
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from orrery_auth.app import create_app
from orrery_auth.settings import AuthSettings
from orrery_shared.events import Event
from orrery_shared.settings import KafkaSettings, RedisSettings
from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Schema:
    url: str
    name: str


@pytest.fixture(scope="session")
def auth_schema(infra: Infra) -> Iterator[Schema]:
    """A fresh schema owned by its own role, migrated to head by the service's own command."""
    name = "t_auth_" + uuid4().hex[:10]
    with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
        admin.execute(f"GRANT CONNECT ON DATABASE orrery TO {name}")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    schema = Schema(url=infra.role_url(name), name=name)
    env = {**os.environ, "ORRERY_AUTH_DATABASE_URL": schema.url, "ORRERY_AUTH_DB_SCHEMA": name}
    result = subprocess.run(
        [sys.executable, "-m", "orrery_auth", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    try:
        yield schema
    finally:
        with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")
            admin.execute(f"DROP OWNED BY {name}")
            admin.execute(f"DROP ROLE {name}")


def sql(infra: Infra, schema: Schema, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL in the auth schema as its role (to inspect or age rows)."""
    url = schema.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True, options=f"-csearch_path={schema.name}") as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth-keys")


def make_settings(infra: Infra, schema: Schema, smtp: SmtpServer, key_dir: Path, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "database_url": schema.url,
        "db_schema": schema.name,
        "kafka": KafkaSettings(bootstrap_servers=infra.kafka_bootstrap),
        "redis": RedisSettings(url=infra.redis_url),
        "redis_key_prefix": f"test:auth:{uuid4().hex[:8]}:",
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_username": smtp.username,
        "smtp_password": smtp.password,
        "public_base_url": "http://127.0.0.1:8000",
        "dev_key_dir": key_dir,
        "trusted_proxies": "127.0.0.1/32",
    }
    values.update(overrides)
    return AuthSettings(**values)


@dataclass
class RunningService:
    base_url: str
    app: FastAPI
    settings: AuthSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(app: FastAPI) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    port = free_port()
    # As `python -m orrery_auth` runs it: uvicorn believes no X-Forwarded-For, the app decides.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on", forwarded_allow_ips=""
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the auth service stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError("the auth service did not start")
        await asyncio.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, task


@asynccontextmanager
async def running(settings: AuthSettings) -> AsyncIterator[RunningService]:
    """The service built from `settings`, listening on a free loopback port until the block ends."""
    app = create_app(settings)
    base_url, server, task = await serve(app)
    try:
        yield RunningService(base_url, app, settings)
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def auth_service(
    infra: Infra, auth_schema: Schema, smtp_server: SmtpServer, key_dir: Path
) -> AsyncIterator[RunningService]:
    async with running(make_settings(infra, auth_schema, smtp_server, key_dir)) as service:
        yield service


def random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest.fixture
async def client(auth_service: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    """A client with an address of its own (via X-Forwarded-For from a trusted proxy), so limits are per test."""
    headers = {"X-Forwarded-For": random_ip()}
    async with httpx.AsyncClient(base_url=auth_service.base_url, headers=headers, timeout=30) as http:
        yield http


def unique_email(label: str = "user") -> str:
    return f"{label}-{uuid4().hex[:10]}@example.com"


async def sign_in(
    client: httpx.AsyncClient,
    mailbox: SmtpServer,
    email: str,
    username: str = "Ada",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Request a link, take it from the delivered mail, verify it; returns the token response.

    `headers` (a guest's bearer token) go with both the request and the verification, as the web client sends
    them: a link folds in only the guest that asked for it."""
    before = len(mailbox.to(email))
    response = await client.post("/auth/magic-link", json={"email": email, "username": username}, headers=headers)
    assert response.status_code == 202, response.text
    mail = await mailbox.mail_to(email, count=before + 1)
    token = link_token(mail.links[0])
    verified = await client.post("/auth/verify", json={"token": token}, headers=headers or {})
    assert verified.status_code == 200, verified.text
    body: dict[str, Any] = verified.json()
    return body


def link_token(link: str) -> str:
    query = parse_qs(urlsplit(link).query)
    return query["token"][0]


class KafkaTail:
    """Reads a topic from the end offsets recorded at creation: only what was published afterwards."""

    def __init__(self, bootstrap: str, event_type: type[Event]) -> None:
        self.event_type = event_type
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> KafkaTail:
        await self.consumer.start()
        # The registry's partition count is what ensure_topics created the topic with.
        partitions = [TopicPartition(self.event_type.TOPIC, p) for p in range(self.event_type.PARTITIONS)]
        self.consumer.assign(partitions)
        ends = await self.consumer.end_offsets(partitions)
        for partition, offset in ends.items():
            self.consumer.seek(partition, offset)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def first(self, match: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """The first event published since creation that satisfies `match`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=250)
            for records in batches.values():
                for record in records:
                    event = self.event_type.model_validate_json(record.value or b"")
                    if match(event):
                        return event
        raise AssertionError(f"no matching {self.event_type.TOPIC} event within {timeout}s")
