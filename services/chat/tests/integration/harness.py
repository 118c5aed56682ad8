"""Running the chat service against the real infrastructure and stub, and talking to it as others do."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from orrery_chat.app import create_app
from orrery_chat.migrations import VERSIONS
from orrery_chat.settings import ChatSettings
from orrery_shared.db.migrations import upgrade
from orrery_shared.events import CharacterCreated, ChatTurnRequested, ConversationDeleted, UserErased, UserMerged
from orrery_shared.kafka import make_broker, publish_event
from orrery_shared.settings import KafkaSettings
from tests.support.infra import Infra
from tests.support.kafka_groups import seed_groups_at_end


def llm_env(stub_url: str) -> dict[str, str]:
    """Every LLM task on the stub, with model names that let tests script chat and summary separately."""
    return {
        "ORRERY_LLM_PROVIDERS__STUB__BASE_URL": stub_url,
        "ORRERY_LLM_DEFAULT_PROVIDER": "stub",
        "ORRERY_LLM_ROUTES__CHAT": '["stub/orrery-chat"]',
        "ORRERY_LLM_ROUTES__SUMMARY": '["stub/orrery-summary"]',
    }


async def migrate(infra: Infra) -> None:
    await asyncio.to_thread(upgrade, infra.role_url("orrery_chat"), "chat", VERSIONS)


async def fresh_groups(infra: Infra) -> str:
    """A consumer-group prefix of its own, starting at the end of chat's topics (see kafka_groups)."""
    prefix = f"test-chat-{uuid4().hex[:8]}"
    await seed_groups_at_end(
        infra.kafka_bootstrap,
        {
            f"{prefix}.turns": [ChatTurnRequested.TOPIC],
            f"{prefix}.characters": [CharacterCreated.TOPIC],
            f"{prefix}.merges": [UserMerged.TOPIC],
            f"{prefix}.deletions": [ConversationDeleted.TOPIC],
            f"{prefix}.erasures": [UserErased.TOPIC],
        },
    )
    return prefix


@asynccontextmanager
async def running_app(settings: ChatSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chat") as client:
            yield app, client


def character(owner: UUID | None = None, name: str = "Zyx Varro") -> CharacterCreated:
    return CharacterCreated(
        character_id=uuid4(),
        owner_user_id=owner,
        name=name,
        planet="Kepler-442b",
        sex="non-binary",
        species="crystalline Vorth",
        archetype="smuggler",
        personality="wry, loyal, allergic to authority",
        backstory="Ran contraband nebula-silk past three empires.",
        speaking_style="clipped sentences and star-lane slang",
        greeting="Well, well. A new face on my deck.",
        portrait_url="/api/characters/x/portrait",
        portrait_provider="procedural",
    )


@dataclass
class Client:
    """Publishes what the gateway would, and reads the token streams it would relay."""

    broker: KafkaBroker
    redis: Redis
    user_id: UUID = field(default_factory=uuid4)

    async def introduce(self, owner: UUID | None = None, name: str = "Zyx Varro") -> CharacterCreated:
        event = character(owner or self.user_id, name)
        await publish_event(self.broker, event)
        return event

    async def send(self, conversation_id: UUID, character_id: UUID, content: str, **extra: Any) -> ChatTurnRequested:
        turn = ChatTurnRequested(
            turn_id=extra.pop("turn_id", uuid4()),
            conversation_id=conversation_id,
            user_id=extra.pop("user_id", self.user_id),
            character_id=character_id,
            content=content,
            client_msg_id=f"c-{uuid4().hex[:6]}",
            **extra,
        )
        await publish_event(self.broker, turn)
        return turn

    async def entries(self, turn_id: UUID) -> list[dict[str, str]]:
        raw = await self.redis.xrange(f"turn:{turn_id}")
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]

    async def until_final(
        self, turn_id: UUID, timeout: float = 30, kinds: tuple[str, ...] = ("done", "error")
    ) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = await self.entries(turn_id)
            if entries and entries[-1]["type"] in kinds:
                return entries
            await asyncio.sleep(0.05)
        raise AssertionError(f"turn {turn_id} did not finish: {json.dumps(await self.entries(turn_id))[:500]}")


@asynccontextmanager
async def client_for(infra: Infra) -> AsyncIterator[Client]:
    broker = make_broker(KafkaSettings(bootstrap_servers=infra.kafka_bootstrap), "test-gateway")
    redis = Redis.from_url(infra.redis_url)
    await broker.start()
    try:
        yield Client(broker, redis)
    finally:
        await broker.stop()
        await redis.aclose()


def deltas(entries: list[dict[str, str]]) -> str:
    return "".join(e["text"] for e in entries if e["type"] == "delta")
