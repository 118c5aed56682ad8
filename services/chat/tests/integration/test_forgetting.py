"""Deleting a conversation and erasing a user: chat forgets, and tells the rest of the platform what to forget."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from orrery_shared.events import ConversationDeleted, UserErased
from orrery_shared.kafka import publish_event
from services.chat.tests.integration.harness import Client
from tests.support.infra import Infra
from tests.support.kafka_spy import spying
from tests.support.llm_stub import StubControl
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration

App = tuple[FastAPI, httpx.AsyncClient]


def rows_of(infra: Infra, sql: str, *params: object) -> int:
    url = infra.role_url("orrery_chat").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        conn.execute("SET search_path TO chat")
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


async def until_gone(client: Client, turn_id: UUID) -> None:
    for _ in range(300):
        if not await client.redis.exists(f"turn:{turn_id}"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the token stream of {turn_id} is still there")


async def test_deleting_a_conversation_publishes_what_to_forget_and_drops_its_token_streams(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    project = uuid4()
    alone, shared, sibling = uuid4(), uuid4(), uuid4()
    first = await client.send(alone, persona.character_id, "A story of its own.")
    second = await client.send(shared, persona.character_id, "One chapter.", project_id=project)
    third = await client.send(sibling, persona.character_id, "Another chapter.", project_id=project)
    for turn in (first, second, third):
        await client.until_final(turn.turn_id)
    headers = token_minter.headers(client.user_id)

    await client.redis.set(f"turn:{first.turn_id}:owner", f"{client.user_id} 0")  # as the gateway claims it
    async with spying(infra.kafka_bootstrap, ConversationDeleted) as spy:
        assert (await http.delete(f"/conversations/{alone}", headers=headers)).status_code == 204
        assert (await http.delete(f"/conversations/{shared}", headers=headers)).status_code == 204
        only = await spy.wait_for(ConversationDeleted, lambda e: e.conversation_id == alone)
        one_of_two = await spy.wait_for(ConversationDeleted, lambda e: e.conversation_id == shared)

    assert only.user_id == client.user_id and only.project_orphaned and only.turn_ids == [first.turn_id]
    assert one_of_two.project_id == project and not one_of_two.project_orphaned
    await until_gone(client, first.turn_id)
    await until_gone(client, second.turn_id)
    assert not await client.redis.exists(f"turn:{first.turn_id}:owner")  # nothing left to resume
    assert await client.redis.exists(f"turn:{third.turn_id}")
    assert rows_of(infra, "SELECT count(*) FROM turns WHERE conversation_id = %s", alone) == 0
    assert rows_of(infra, "SELECT count(*) FROM messages WHERE conversation_id = %s", alone) == 0
    # Deleting it again, or someone else's, publishes nothing and answers 404.
    assert (await http.delete(f"/conversations/{alone}", headers=headers)).status_code == 404


async def test_erasing_a_user_deletes_their_conversations_characters_and_streams_only(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    guest = uuid4()
    private = await client.introduce(owner=client.user_id, name="Their Own")
    guest_character = await client.introduce(owner=guest, name="The Guest's")
    mine = await client.send(uuid4(), private.character_id, "Remember me.")
    merged_in = await client.send(uuid4(), guest_character.character_id, "As a guest.", user_id=guest)
    bystander = uuid4()
    theirs_conversation = uuid4()
    their_character = await client.introduce(owner=bystander, name="Not Theirs")
    theirs = await client.send(theirs_conversation, their_character.character_id, "Someone else.", user_id=bystander)
    for turn in (mine, merged_in, theirs):
        await client.until_final(turn.turn_id)

    event = UserErased(user_id=client.user_id, merged_user_ids=[guest])
    await publish_event(client.broker, event)
    await publish_event(client.broker, event)  # redelivered: harmless
    await until_gone(client, mine.turn_id)
    await until_gone(client, merged_in.turn_id)

    users = [client.user_id, guest]
    assert rows_of(infra, "SELECT count(*) FROM conversations WHERE user_id = ANY(%s)", users) == 0
    assert rows_of(infra, "SELECT count(*) FROM turns WHERE turn_id = ANY(%s)", [mine.turn_id, merged_in.turn_id]) == 0
    assert rows_of(infra, "SELECT count(*) FROM characters WHERE owner_user_id = ANY(%s)", users) == 0
    assert rows_of(infra, "SELECT count(*) FROM conversations WHERE conversation_id = %s", theirs_conversation) == 1
    listed = await http.get("/conversations", headers=token_minter.headers(client.user_id))
    assert listed.json()["conversations"] == []
