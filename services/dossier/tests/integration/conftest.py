"""The dossier service in-process against real Kafka, PostgreSQL and the LLM stub.

Each test gets its own schema (and role), its own consumer group starting at the current end of the topics, and
signs its own access tokens with a throwaway key the service trusts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import jwt
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from orrery_dossier.app import Topics, create_app
from orrery_dossier.migrations import VERSIONS
from orrery_dossier.settings import DossierSettings
from orrery_shared.auth import JwtVerifier, StaticKeys, public_jwk
from orrery_shared.db.migrations import upgrade
from orrery_shared.events import (
    ChatTurnCompleted,
    ConversationDeleted,
    DossierUpdated,
    Event,
    MessageRecord,
    TokenUsage,
    TopicSpec,
    UserErased,
    UserMerged,
    dlq_topic,
)
from orrery_shared.kafka import encode, ensure_topics, event_headers, make_broker
from orrery_shared.llm import LLMClient
from orrery_shared.settings import KafkaSettings
from tests.support import llm_stub as stub_plugin
from tests.support.infra import Infra
from tests.support.llm_stub import StubControl

# The stub's fixtures, for runs that do not load tests.support.llm_stub as a plugin.
llm_stub_url = stub_plugin.llm_stub_url
llm_stub = stub_plugin.llm_stub

ISSUER, AUDIENCE = "orrery-auth", "orrery"
E = TypeVar("E", bound=Event)


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 30.0, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s (last value: {value!r})")
        await asyncio.sleep(every)


@dataclass
class Signer:
    """Signs access tokens the way the auth service does."""

    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    def verifier(self) -> JwtVerifier:
        return JwtVerifier(StaticKeys.from_jwks({"keys": [public_jwk(self.key)]}), issuer=ISSUER, audience=AUDIENCE)

    def headers(self, user_id: UUID) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "name": "Writer",
            "guest": False,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 600,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        token = jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": public_jwk(self.key)["kid"]})
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


@pytest.fixture
def scratch_schema(infra: Infra) -> Iterator[tuple[str, str]]:
    """A fresh schema owned by a fresh role, migrated to head: (database URL, schema)."""
    name = "dossier_t_" + uuid4().hex[:10]
    with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
        admin.execute(f"GRANT CONNECT ON DATABASE orrery TO {name}")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    url = infra.role_url(name)
    upgrade(url, name, VERSIONS)
    try:
        yield url, name
    finally:
        with psycopg.connect(infra.postgres_admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")
            admin.execute(f"DROP OWNED BY {name}")
            admin.execute(f"DROP ROLE {name}")


def private_event(base: type[E], run: str) -> type[E]:
    """`base` bound to a topic of this test run: other test suites publish real turns on the shared broker."""
    topic = f"test.dossier.{run}.{base.TOPIC}"
    return type(f"Private{base.__name__}", (base,), {"TOPIC": topic, "__module__": __name__})


@pytest.fixture(scope="session")
async def topics(infra: Infra) -> AsyncIterator[Topics]:
    """Private copies of the topics the service consumes, on the real broker, deleted afterwards."""
    run = uuid4().hex[:8]
    bound = Topics(
        turns=private_event(ChatTurnCompleted, run),
        merges=private_event(UserMerged, run),
        deletions=private_event(ConversationDeleted, run),
        erasures=private_event(UserErased, run),
    )
    consumed: list[type[Event]] = [bound.turns, bound.merges, bound.deletions, bound.erasures]
    names = [event.TOPIC for event in consumed]
    specs = [TopicSpec(event.TOPIC, event.PARTITIONS) for event in consumed]
    specs += [TopicSpec(dlq_topic(name), 3) for name in names]
    settings = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap)
    await ensure_topics(settings)
    await ensure_topics(settings, specs)
    try:
        yield bound
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([spec.name for spec in specs])
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def producer(infra: Infra, topics: Topics) -> AsyncIterator[KafkaBroker]:
    """Publishes test events to the service's (private) topics."""
    broker = make_broker(KafkaSettings(bootstrap_servers=infra.kafka_bootstrap), "dossier-tests")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def start_group_at_end(bootstrap: str, group: str, topics: list[type[Event]]) -> None:
    """Commit the group's offsets at the topics' current end, so it reads only what a test publishes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t.TOPIC, p) for t in topics for p in range(t.PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(dict(ends.items()))
    finally:
        await consumer.stop()


class UpdatesWatcher:
    """Reads dossier.updated.v1 from the real broker, from where it was when the test started."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.seen: list[DossierUpdated] = []

    async def start(self) -> None:
        await self.consumer.start()
        partitions = [TopicPartition(DossierUpdated.TOPIC, p) for p in range(DossierUpdated.PARTITIONS)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)

    async def for_project(self, project_id: UUID) -> list[DossierUpdated]:
        batches = await self.consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                self.seen.append(DossierUpdated.model_validate_json(record.value))
        return [e for e in self.seen if e.project_id == project_id]

    async def stop(self) -> None:
        await self.consumer.stop()


@dataclass
class Service:
    """A running dossier service and ways to talk to it."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: DossierSettings
    producer: KafkaBroker
    signer: Signer
    updates: UpdatesWatcher
    topics: Topics

    def auth(self, user_id: UUID) -> dict[str, str]:
        return self.signer.headers(user_id)

    async def publish(self, event: Event) -> None:
        """Publish to the topic the service consumes that event type from."""
        bound = (self.topics.turns, self.topics.merges, self.topics.deletions, self.topics.erasures)
        topic = next(private.TOPIC for private in bound if type(event) in private.__bases__)
        await self.producer.publish(
            encode(event), topic, key=event.partition_key().encode(), headers=event_headers(event)
        )

    async def dossier(self, user_id: UUID, project_id: UUID) -> dict[str, Any] | None:
        response = await self.http.get(f"/dossiers/{project_id}", headers=self.auth(user_id))
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_for_version(
        self, user_id: UUID, project_id: UUID, version: int, seconds: float = 30
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            body = await self.dossier(user_id, project_id)
            return body if body is not None and body["version"] >= version else None

        body: dict[str, Any] = await eventually(reached, seconds)
        return body


def turn(
    user_id: UUID,
    project_id: UUID,
    user_text: str,
    assistant_text: str = "I see. Tell me more.",
    conversation_id: UUID | None = None,
) -> ChatTurnCompleted:
    """A completed turn as the chat service publishes it."""
    now = datetime.now(UTC)
    turn_id = uuid4()
    return ChatTurnCompleted(
        turn_id=turn_id,
        conversation_id=conversation_id or project_id,
        user_id=user_id,
        character_id=uuid4(),
        project_id=project_id,
        user_message=MessageRecord(message_id=uuid4(), content=user_text, created_at=now),
        assistant_message=MessageRecord(message_id=uuid4(), content=assistant_text, created_at=now),
        usage=TokenUsage(prompt_tokens=10, completion_tokens=10, model="stub"),
        correlation_id=str(turn_id),
    )


def merged(from_user: UUID, to_user: UUID) -> UserMerged:
    return UserMerged(from_user_id=from_user, to_user_id=to_user)


def extraction_reply(**sections: Any) -> dict[str, Any]:
    """A scripted stub step answering one extraction call."""
    body = {"title": None, "characters": [], "themes": [], "locations": [], "plot_points": [], **sections}
    return {"content": json.dumps(body)}


StartService = Callable[..., Any]


@pytest.fixture
def start_service(
    infra: Infra,
    scratch_schema: tuple[str, str],
    producer: KafkaBroker,
    topics: Topics,
    signer: Signer,
    llm_stub: StubControl,
) -> StartService:
    """`async with start_service(**settings) as service:` runs the service until the block ends."""
    url, schema = scratch_schema

    @asynccontextmanager
    async def run(llm_overrides: dict[str, Any] | None = None, **overrides: Any) -> AsyncIterator[Service]:
        prefix = "dossier-test-" + uuid4().hex[:10]
        values: dict[str, Any] = {
            "database_url": url,
            "db_schema": schema,
            "db_pool_size": 5,
            "consumer_group_prefix": prefix,
            "kafka": KafkaSettings(bootstrap_servers=infra.kafka_bootstrap),
            "poll_seconds": 0.2,
            "max_wait_seconds": 3_600,
            "retry_base_seconds": 0.3,
            "retry_max_seconds": 1.0,
            **overrides,
        }
        settings = DossierSettings(**values)
        await start_group_at_end(infra.kafka_bootstrap, settings.turns_group, [topics.turns])
        await start_group_at_end(infra.kafka_bootstrap, settings.merges_group, [topics.merges])
        await start_group_at_end(infra.kafka_bootstrap, settings.deletions_group, [topics.deletions])
        await start_group_at_end(infra.kafka_bootstrap, settings.erasures_group, [topics.erasures])
        llm = LLMClient(llm_stub.settings(backoff_base_s=0.01, backoff_max_s=0.05, **(llm_overrides or {})))
        app = create_app(settings, llm=llm, verifier=signer.verifier(), topics=topics)
        updates = UpdatesWatcher(infra.kafka_bootstrap)
        await updates.start()
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dossier") as http,
            ):
                yield Service(app, http, settings, producer, signer, updates, topics)
        finally:
            await updates.stop()

    return run
