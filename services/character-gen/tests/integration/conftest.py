"""The character-gen service in-process on a loopback port, against real Kafka, PostgreSQL and the LLM stub.

The schema is a throwaway one owned by its own role, migrated with `python -m orrery_character_gen migrate`.
The service runs per test module, and its consumer group starts at the topics' current end, so it neither
replays older spins nor lingers to answer other tests' spins later in the session. Its image
chain is OpenAI Images (served by the stub) then the procedural portrait, so both paths can be exercised.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI

from orrery_character_gen.app import create_app
from orrery_character_gen.settings import CharacterGenSettings
from orrery_shared.auth import JwtVerifier, StaticKeys
from orrery_shared.events import CharacterCreated, CharacterFailed, CharacterRequested, Event, UserErased, UserMerged
from orrery_shared.kafka import encode, ensure_topics, event_headers
from orrery_shared.settings import KafkaSettings
from tests.support.infra import Infra
from tests.support.kafka_groups import seed_groups_at_end
from tests.support.llm_stub import StubControl
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Schema:
    url: str
    name: str


@pytest.fixture(scope="session")
def characters_schema(infra: Infra) -> Iterator[Schema]:
    """A fresh schema owned by its own role, migrated to head by the service's own command."""
    name = "t_chargen_" + uuid.uuid4().hex[:10]
    with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
        admin.execute(f"GRANT CONNECT ON DATABASE orrery TO {name}")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    schema = Schema(url=infra.role_url(name), name=name)
    env = {**os.environ, "ORRERY_CHARACTER_GEN_DATABASE_URL": schema.url, "ORRERY_CHARACTER_GEN_DB_SCHEMA": name}
    result = subprocess.run(
        [sys.executable, "-m", "orrery_character_gen", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    try:
        yield schema
    finally:
        with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")
            admin.execute(f"DROP OWNED BY {name}")
            admin.execute(f"DROP ROLE {name}")


def sql(schema: Schema, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL in the service's schema as its role (to inspect what was stored)."""
    url = schema.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True, options=f"-csearch_path={schema.name}") as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


# --- Kafka -------------------------------------------------------------------------------------------------


@dataclass
class Events:
    """Every character.created.v1 and character.failed.v1 published while the session runs."""

    consumer: AIOKafkaConsumer
    created: list[CharacterCreated] = field(default_factory=list)
    failed: list[CharacterFailed] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async for record in self.consumer:
            if record.topic == CharacterCreated.TOPIC:
                self.created.append(CharacterCreated.model_validate_json(record.value or b""))
            else:
                self.failed.append(CharacterFailed.model_validate_json(record.value or b""))

    async def wait_for(self, found: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll `found()` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"nothing arrived within {timeout}s")


async def _tail(bootstrap: str, topics: list[type[Event]]) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(t.TOPIC, p) for t in topics for p in range(t.PARTITIONS)]
    consumer.assign(partitions)
    for partition, offset in (await consumer.end_offsets(partitions)).items():
        consumer.seek(partition, offset)
    return consumer


@pytest.fixture(scope="session")
async def events(infra: Infra) -> AsyncIterator[Events]:
    await ensure_topics(KafkaSettings(bootstrap_servers=infra.kafka_bootstrap))
    collector = Events(await _tail(infra.kafka_bootstrap, [CharacterCreated, CharacterFailed]))
    collector.task = asyncio.create_task(collector.run())
    try:
        yield collector
    finally:
        collector.task.cancel()
        await asyncio.gather(collector.task, return_exceptions=True)
        await collector.consumer.stop()


@pytest.fixture(scope="session")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    kafka = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True)
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


async def publish(producer: AIOKafkaProducer, event: Event) -> None:
    """Publish an event as a service's outbox relay would."""
    headers = [(k, v.encode()) for k, v in event_headers(event).items()]
    await producer.send_and_wait(event.TOPIC, encode(event), key=event.partition_key().encode(), headers=headers)


# --- the service -------------------------------------------------------------------------------------------


@dataclass
class Service:
    base_url: str
    app: FastAPI
    settings: CharacterGenSettings
    schema: Schema
    http: httpx.AsyncClient
    tokens: TokenMinter
    events: Events
    producer: AIOKafkaProducer

    async def spin(self, user_id: uuid.UUID, **traits: str) -> CharacterRequested:
        """Publish a spin on the real broker."""
        request = CharacterRequested(
            request_id=uuid.uuid4(), user_id=user_id, traits=traits, correlation_id=f"test-{uuid.uuid4().hex[:8]}"
        )
        await publish(self.producer, request)
        return request

    async def spin_created(self, user_id: uuid.UUID, **traits: str) -> CharacterCreated:
        request = await self.spin(user_id, **traits)
        event = await self.outcome(request.request_id)
        assert isinstance(event, CharacterCreated), event
        return event

    async def recorded(self, request_id: uuid.UUID) -> tuple[str, uuid.UUID | None] | None:
        """The outcome this service stored for a spin, if any."""
        rows = await asyncio.to_thread(
            sql, self.schema, "SELECT status, character_id FROM spin_requests WHERE request_id = %s", request_id
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def outcome(self, request_id: uuid.UUID, timeout: float = 60.0) -> Event:
        """The event this service published for a spin.

        Another test session may run a character-gen on the same broker and answer the same request from its
        own database, so the event is picked by what this service stored, not just by request id.
        """
        deadline = time.monotonic() + timeout
        while (found := await self.recorded(request_id)) is None:
            assert time.monotonic() < deadline, f"spin {request_id} was not handled within {timeout}s"
            await asyncio.sleep(0.05)
        status, character_id = found
        if status == "created":
            return await self.events.wait_for(
                lambda: next((e for e in self.events.created if e.character_id == character_id), None), timeout
            )
        return await self.events.wait_for(
            lambda: next((e for e in self.events.failed if e.request_id == request_id), None), timeout
        )

    async def merge(self, guest: uuid.UUID, account: uuid.UUID) -> UserMerged:
        event = UserMerged(from_user_id=guest, to_user_id=account)
        await publish(self.producer, event)
        return event

    async def erase(self, user: uuid.UUID, merged: list[uuid.UUID] | None = None) -> UserErased:
        event = UserErased(user_id=user, merged_user_ids=merged or [])
        await publish(self.producer, event)
        return event

    def as_user(self, user_id: uuid.UUID) -> dict[str, str]:
        return self.tokens.headers(user_id)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def service(
    infra: Infra,
    characters_schema: Schema,
    llm_stub_url: str,
    token_minter: TokenMinter,
    events: Events,
    producer: AIOKafkaProducer,
) -> AsyncIterator[Service]:
    group = "test-character-gen-" + uuid.uuid4().hex[:8]
    await seed_groups_at_end(
        infra.kafka_bootstrap, {group: [CharacterRequested.TOPIC, UserMerged.TOPIC, UserErased.TOPIC]}
    )
    settings = CharacterGenSettings(
        database_url=characters_schema.url,
        db_schema=characters_schema.name,
        kafka=KafkaSettings(bootstrap_servers=infra.kafka_bootstrap),
        consumer_group=group,
        image_providers=["openai", "procedural"],
        image_timeout_s=20,
    )
    control = StubControl(llm_stub_url)
    verifier = JwtVerifier(StaticKeys.from_jwks(token_minter.jwks))
    app = create_app(settings, llm_settings=control.settings(), verifier=verifier)
    control.close()
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the character-gen service stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError("the character-gen service did not start")
        await asyncio.sleep(0.02)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            yield Service(base_url, app, settings, characters_schema, http, token_minter, events, producer)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def stub(llm_stub: StubControl) -> StubControl:
    """The stub, its script and request log cleared for this test."""
    return llm_stub


def persona_calls(stub: StubControl, sex: str, species: str, archetype: str) -> list[dict[str, Any]]:
    """The persona requests the stub received for these traits (other spins may share the stub)."""
    lines = f"Sex or gender: {sex}\nSpecies: {species}\nArchetype: {archetype}"
    return [r for r in stub.chat_requests() if any(lines in str(m.get("content")) for m in r.get("messages", []))]
