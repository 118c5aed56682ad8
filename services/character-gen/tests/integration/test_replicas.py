"""Two character-gen processes in one consumer group share the spins: each spin ends in exactly one character,
and both replicas take part. Real processes, on the module's own schema."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from orrery_shared.events import CharacterRequested, UserMerged
from tests.support.infra import Infra
from tests.support.kafka_groups import seed_groups_at_end
from tests.support.processes import replicas

from .conftest import Schema, publish, sql

pytestmark = pytest.mark.integration

SPINS = 16


async def spins_handled(port: int, group: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    pattern = (
        rf'^orrery_events_consumed_total\{{(?=[^}}]*topic="{re.escape(CharacterRequested.TOPIC)}")'
        rf'(?=[^}}]*group="{re.escape(group)}")(?=[^}}]*outcome="ok")[^}}]*\}} (\S+)$'
    )
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_two_replicas_share_the_spins_and_make_one_character_each(
    infra: Infra, characters_schema: Schema, llm_stub_url: str, producer: AIOKafkaProducer
) -> None:
    group = "test-character-gen-" + uuid.uuid4().hex[:8]
    await seed_groups_at_end(infra.kafka_bootstrap, {group: [CharacterRequested.TOPIC, UserMerged.TOPIC]})
    env = {
        **os.environ,
        **infra.service_env(),
        "ORRERY_CHARACTER_GEN_DATABASE_URL": characters_schema.url,
        "ORRERY_CHARACTER_GEN_DB_SCHEMA": characters_schema.name,
        "ORRERY_CHARACTER_GEN_CONSUMER_GROUP": group,
        "ORRERY_CHARACTER_GEN_IMAGE_PROVIDERS": "procedural",
        "ORRERY_LLM_PROVIDERS__STUB__BASE_URL": llm_stub_url,
        "ORRERY_LLM_DEFAULT_PROVIDER": "stub",
    }
    requests = [CharacterRequested(request_id=uuid.uuid4(), user_id=uuid.uuid4()) for _ in range(SPINS)]
    with replicas("orrery_character_gen", env, "ORRERY_CHARACTER_GEN_PORT", 2) as ports:
        await asyncio.sleep(2)  # both members have their partitions
        for request in requests:
            await publish(producer, request)
        ids = [r.request_id for r in requests]
        deadline = time.monotonic() + 120
        while True:
            done = await asyncio.to_thread(
                sql, characters_schema, "SELECT status FROM spin_requests WHERE request_id = ANY(%s)", ids
            )
            if len(done) == SPINS:
                break
            assert time.monotonic() < deadline, f"{len(done)} of {SPINS} spins handled"
            await asyncio.sleep(0.2)
        handled = [await spins_handled(port, group) for port in ports]

    assert [status for (status,) in done] == ["created"] * SPINS
    made = await asyncio.to_thread(
        sql, characters_schema, "SELECT request_id FROM characters WHERE request_id = ANY(%s)", ids
    )
    assert sorted(str(r) for (r,) in made) == sorted(str(i) for i in ids)  # one character per spin
    assert all(0 < h < SPINS for h in handled) and sum(handled) == SPINS, handled  # both took part
