"""Two chat processes in one consumer group share the turns: each turn is answered once, in its conversation's
order, and both replicas take part. Real processes; this module runs no in-process chat service."""

from __future__ import annotations

import asyncio
import os
import re
from uuid import uuid4

import httpx
import psycopg
import pytest

from services.chat.tests.integration.harness import client_for, deltas, fresh_groups, llm_env, migrate
from tests.support.infra import Infra
from tests.support.processes import replicas
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration

CONVERSATIONS = 16
TURNS_EACH = 3


async def turns_answered(port: int) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.search(r"^orrery_chat_first_delta_seconds_count(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_two_replicas_share_the_turns_and_answer_each_once_in_order(
    infra: Infra, llm_stub_url: str, token_minter: TokenMinter
) -> None:
    await migrate(infra)
    env = {
        **os.environ,
        **infra.service_env(),
        **llm_env(llm_stub_url),
        "ORRERY_JWT_JWKS": token_minter.jwks,
        "ORRERY_CHAT_CONSUMER_GROUP_PREFIX": await fresh_groups(infra),
    }
    async with client_for(infra) as client:
        with replicas("orrery_chat", env, "ORRERY_CHAT_PORT", 2) as ports:
            await asyncio.sleep(2)  # both members have their partitions
            persona = await client.introduce()
            conversations = [uuid4() for _ in range(CONVERSATIONS)]
            sent = []
            for n in range(TURNS_EACH):
                for conversation in conversations:
                    sent.append(await client.send(conversation, persona.character_id, f"Line {n} of the log."))
            streams = {t.turn_id: await client.until_final(t.turn_id, timeout=120) for t in sent}
            answered = [await turns_answered(port) for port in ports]

    assert all(entries[-1]["type"] == "done" for entries in streams.values())
    assert all(0 < a < len(sent) for a in answered), answered  # both replicas answered some, neither all
    assert sum(answered) == len(sent)
    url = infra.role_url("orrery_chat").replace("+psycopg", "")
    async with await psycopg.AsyncConnection.connect(url, options="-csearch_path=chat") as db:
        for conversation in conversations:
            rows = await (
                await db.execute(
                    "SELECT role, content, turn_id FROM messages WHERE conversation_id = %s ORDER BY seq",
                    (conversation,),
                )
            ).fetchall()
            roles = [role for role, _, _ in rows]
            assert roles == ["assistant"] + ["user", "assistant"] * TURNS_EACH  # the greeting, then in order
            users = [content for role, content, _ in rows if role == "user"]
            assert users == [f"Line {n} of the log." for n in range(TURNS_EACH)]
            for role, content, turn_id in rows[2::2]:
                assert role == "assistant" and content == deltas(streams[turn_id])
