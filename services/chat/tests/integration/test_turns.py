"""Turns end to end through the real broker, database, Redis and LLM stub."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from orrery_shared.events import ChatTurnCompleted, ChatTurnFailed, UserMerged
from orrery_shared.kafka import publish_event
from services.chat.tests.integration.harness import Client, deltas
from tests.support.infra import Infra
from tests.support.kafka_spy import spying
from tests.support.llm_stub import StubControl
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration

App = tuple[FastAPI, httpx.AsyncClient]


async def test_a_turn_streams_deltas_in_order_stores_both_messages_and_announces_completion(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    reply = "Nebula-silk does not smuggle itself, friend. What do you need?"
    llm_stub.script(model="orrery-chat", content=reply)
    persona = await client.introduce()
    conversation = uuid4()
    async with spying(infra.kafka_bootstrap, ChatTurnCompleted) as spy:
        turn = await client.send(conversation, persona.character_id, "Hello there, who are you?")
        entries = await client.until_final(turn.turn_id)
        completed = await spy.wait_for(ChatTurnCompleted, lambda e: e.turn_id == turn.turn_id)

    assert [int(e["seq"]) for e in entries] == list(range(1, len(entries) + 1))
    assert deltas(entries) == reply
    assert entries[-1]["type"] == "done" and entries[-1]["status"] == "complete"
    assert entries[-1]["message_id"] == str(completed.assistant_message.message_id)
    assert completed.user_message.content == "Hello there, who are you?"
    assert completed.assistant_message.content == reply
    assert completed.usage.model == "orrery-chat" and completed.usage.completion_tokens > 0
    assert completed.project_id is not None

    listed = await http.get(f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id))
    assert listed.status_code == 200
    roles = [(m["role"], m["content"]) for m in listed.json()["messages"][::-1]]
    assert roles == [("assistant", persona.greeting), ("user", "Hello there, who are you?"), ("assistant", reply)]


async def test_back_to_back_turns_are_answered_in_order_with_the_first_exchange_in_the_second_prompt(
    chat: App, client: Client, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="First answer about the moons.", tokens_per_second=50)
    llm_stub.script(model="orrery-chat", content="Second answer.")
    persona = await client.introduce()
    conversation = uuid4()
    first = await client.send(conversation, persona.character_id, "Tell me about the three moons.")
    second = await client.send(conversation, persona.character_id, "And the fourth?")
    first_entries = await client.until_final(first.turn_id)
    second_entries = await client.until_final(second.turn_id)

    assert deltas(first_entries) == "First answer about the moons."
    assert deltas(second_entries) == "Second answer."
    prompts = [r["body"]["messages"] for r in llm_stub.chat_requests(model="orrery-chat")]
    second_prompt = next(m for m in prompts if m[-1]["content"] == "And the fourth?")
    assert [m["content"] for m in second_prompt[1:]] == [
        persona.greeting,
        "Tell me about the three moons.",
        "First answer about the moons.",
        "And the fourth?",
    ]
    assert persona.name in second_prompt[0]["content"] and second_prompt[0]["role"] == "system"


async def test_the_time_to_a_replys_first_delta_is_measured_from_taking_the_turn(
    chat: App, client: Client, llm_stub: StubControl
) -> None:
    _, http = chat
    llm_stub.script(model="orrery-chat", content="Slow to start, then quick.", ttft_ms=300)
    persona = await client.introduce()

    def observed() -> tuple[float, float, float]:
        count = REGISTRY.get_sample_value("orrery_chat_first_delta_seconds_count") or 0.0
        total = REGISTRY.get_sample_value("orrery_chat_first_delta_seconds_sum") or 0.0
        fast = REGISTRY.get_sample_value("orrery_chat_first_delta_seconds_bucket", {"le": "0.25"}) or 0.0
        return count, total, fast

    before = observed()
    started = time.perf_counter()
    turn = await client.send(uuid4(), persona.character_id, "Take your time.")
    await client.until_final(turn.turn_id)
    elapsed = time.perf_counter() - started
    count, total, fast = (a - b for a, b in zip(observed(), before, strict=True))

    assert count == 1
    assert 0.3 <= total < elapsed  # the provider's 300 ms wait is in it, the Kafka trip to chat is not
    assert fast == 0  # hence above the 250 ms bucket
    scraped = (await http.get("/metrics")).text
    assert "orrery_chat_first_delta_seconds_bucket" in scraped


async def test_cancel_mid_stream_keeps_the_partial_reply_as_cancelled(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    long_reply = " ".join(f"word{i}" for i in range(400))
    llm_stub.script(model="orrery-chat", content=long_reply, tokens_per_second=40)
    persona = await client.introduce()
    conversation = uuid4()
    async with spying(infra.kafka_bootstrap, ChatTurnCompleted) as spy:
        turn = await client.send(conversation, persona.character_id, "Tell me everything.")
        while len([e for e in await client.entries(turn.turn_id) if e["type"] == "delta"]) < 5:
            await asyncio.sleep(0.05)
        await client.redis.set(f"turn:{turn.turn_id}:cancel", "1", ex=60)  # what the gateway does on `cancel`
        entries = await client.until_final(turn.turn_id)
        completed = await spy.wait_for(ChatTurnCompleted, lambda e: e.turn_id == turn.turn_id)

    assert entries[-1]["status"] == "cancelled"
    partial = deltas(entries)
    assert 0 < len(partial) < len(long_reply) and long_reply.startswith(partial)
    assert completed.status == "cancelled" and completed.assistant_message.content == partial
    listed = await http.get(f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id))
    last = listed.json()["messages"][::-1][-1]
    assert (last["content"], last["status"]) == (partial, "cancelled")


async def test_a_first_turn_cancelled_before_it_is_answered_asks_the_llm_nothing(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    turn_id = uuid4()
    await client.redis.set(f"turn:{turn_id}:cancel", "1", ex=60)  # the user cancelled while it was queued
    async with spying(infra.kafka_bootstrap, ChatTurnCompleted) as spy:
        await client.send(conversation, persona.character_id, "Never mind.", turn_id=turn_id)
        entries = await client.until_final(turn_id)
        completed = await spy.wait_for(ChatTurnCompleted, lambda e: e.turn_id == turn_id)

    assert [e["type"] for e in entries] == ["done"] and entries[-1]["status"] == "cancelled"
    assert completed.status == "cancelled" and completed.assistant_message.content == ""
    assert llm_stub.chat_requests(model="orrery-chat") == []
    listed = await http.get(f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id))
    assert [(m["content"], m["status"]) for m in listed.json()["messages"][::-1]][-2:] == [
        ("Never mind.", "complete"),
        ("", "cancelled"),
    ]


async def test_an_llm_failure_fails_the_turn_and_keeps_the_users_message(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    llm_stub.script(model="orrery-chat", status=500, times=20)
    persona = await client.introduce()
    conversation = uuid4()
    async with spying(infra.kafka_bootstrap, ChatTurnFailed) as spy:
        turn = await client.send(conversation, persona.character_id, "Are you there?")
        entries = await client.until_final(turn.turn_id, timeout=60)
        failed = await spy.wait_for(ChatTurnFailed, lambda e: e.turn_id == turn.turn_id)

    assert entries[-1]["type"] == "error" and entries[-1]["retryable"] == "1"
    assert failed.retryable and failed.conversation_id == conversation
    listed = await http.get(f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id))
    assert [m["content"] for m in listed.json()["messages"][::-1]][-1] == "Are you there?"


async def test_a_turn_into_another_users_conversation_is_refused_without_touching_it(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    first = await client.send(conversation, persona.character_id, "Mine.")
    await client.until_final(first.turn_id)
    intruder = uuid4()
    async with spying(infra.kafka_bootstrap, ChatTurnFailed) as spy:
        turn = await client.send(conversation, persona.character_id, "Now mine!", user_id=intruder)
        entries = await client.until_final(turn.turn_id)
        failed = await spy.wait_for(ChatTurnFailed, lambda e: e.turn_id == turn.turn_id)
    assert entries[-1]["reason"] == "not_found" and not failed.retryable
    owner_view = await http.get(f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id))
    assert "Now mine!" not in [m["content"] for m in owner_view.json()["messages"][::-1]]
    for path in (f"/conversations/{conversation}", f"/conversations/{conversation}/messages"):
        response = await http.get(path, headers=token_minter.headers(intruder))
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    deleted = await http.delete(f"/conversations/{conversation}", headers=token_minter.headers(intruder))
    assert deleted.status_code == 404


async def test_conversations_are_listed_for_their_owner_and_need_a_valid_token(
    chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    turn = await client.send(conversation, persona.character_id, "Plot a course to the Veil, please.")
    await client.until_final(turn.turn_id)

    listed = await http.get("/conversations", headers=token_minter.headers(client.user_id))
    [mine] = [c for c in listed.json()["conversations"] if c["conversation_id"] == str(conversation)]
    assert mine["title"] == "Plot a course to the Veil, please."
    assert mine["message_count"] == 3 and mine["character"]["name"] == persona.name
    assert (await http.get("/conversations")).status_code == 401
    assert (await http.get("/conversations", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_ending_a_conversation_stores_a_summary_and_deleting_removes_it(
    chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    turn = await client.send(conversation, persona.character_id, "My name is Ada and I fly a freighter called Kestrel.")
    await client.until_final(turn.turn_id)
    headers = token_minter.headers(client.user_id)

    ended = await http.post(f"/conversations/{conversation}/end", headers=headers)
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert "Kestrel" in ended.json()["summary"]
    shown = (await http.get(f"/conversations/{conversation}", headers=headers)).json()
    assert shown["status"] == "ended" and shown["summary"] == ended.json()["summary"]

    assert (await http.delete(f"/conversations/{conversation}", headers=headers)).status_code == 204
    assert (await http.get(f"/conversations/{conversation}", headers=headers)).status_code == 404


async def test_a_conversation_deleted_while_its_end_summary_is_written_answers_404_not_an_error(
    chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    await client.until_final((await client.send(conversation, persona.character_id, "Short and sweet.")).turn_id)
    headers = token_minter.headers(client.user_id)
    llm_stub.script(model="orrery-summary", content="A summary nobody keeps.", ttft_ms=1000)

    ending = asyncio.create_task(http.post(f"/conversations/{conversation}/end", headers=headers))
    await asyncio.sleep(0.3)
    assert (await http.delete(f"/conversations/{conversation}", headers=headers)).status_code == 204
    ended = await ending
    assert ended.status_code == 404 and ended.json()["error"]["code"] == "not_found"


async def test_a_turn_that_waited_too_long_fails_as_expired_without_calling_the_llm(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with spying(infra.kafka_bootstrap, ChatTurnFailed) as spy:
        turn = await client.send(conversation, persona.character_id, "Still there?", occurred_at=an_hour_ago)
        entries = await client.until_final(turn.turn_id)
        failed = await spy.wait_for(ChatTurnFailed, lambda e: e.turn_id == turn.turn_id)
    assert entries[-1]["type"] == "error" and failed.reason.startswith("expired")
    assert not [
        r for r in llm_stub.chat_requests(model="orrery-chat") if r["body"]["messages"][-1]["content"] == "Still there?"
    ]
    listed = await http.get(f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id))
    assert listed.json()["messages"][::-1][-1]["content"] == "Still there?"


async def test_after_a_guest_becomes_an_account_the_account_continues_with_the_guests_private_character(
    chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    guest, account = client.user_id, uuid4()
    persona = await client.introduce(owner=guest)  # a spun character is private to its spinner
    conversation = uuid4()
    first = await client.send(conversation, persona.character_id, "Remember me?")
    assert (await client.until_final(first.turn_id))[-1]["type"] == "done"  # the persona is now known (cached)

    await publish_event(client.broker, UserMerged(from_user_id=guest, to_user_id=account))
    deadline = asyncio.get_running_loop().time() + 15
    while (await http.get(f"/conversations/{conversation}", headers=token_minter.headers(account))).status_code != 200:
        assert asyncio.get_running_loop().time() < deadline, "the conversation never moved to the account"
        await asyncio.sleep(0.1)

    llm_stub.script(model="orrery-chat", content="Of course I remember you.")
    again = await client.send(conversation, persona.character_id, "It's me, signed in now.", user_id=account)
    entries = await client.until_final(again.turn_id)
    assert entries[-1]["type"] == "done", entries[-1]
    assert deltas(entries) == "Of course I remember you."
    stale = await client.send(conversation, persona.character_id, "Still the guest?", user_id=guest)
    assert (await client.until_final(stale.turn_id))[-1]["reason"] == "not_found"


async def test_a_turn_naming_another_users_project_is_refused_and_its_own_projects_are_shared(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    project = uuid4()
    first = await client.send(uuid4(), persona.character_id, "Chapter one.", project_id=project)
    await client.until_final(first.turn_id)
    second_conversation = uuid4()
    second = await client.send(second_conversation, persona.character_id, "Chapter two.", project_id=project)
    assert (await client.until_final(second.turn_id))[-1]["type"] == "done"  # the user's own project: shared

    intruder = uuid4()
    theirs = await client.introduce(owner=intruder, name="Intruder's Own")
    intruding_conversation = uuid4()
    async with spying(infra.kafka_bootstrap, ChatTurnFailed) as spy:
        turn = await client.send(
            intruding_conversation, theirs.character_id, "Into their story.", user_id=intruder, project_id=project
        )
        entries = await client.until_final(turn.turn_id)
        failed = await spy.wait_for(ChatTurnFailed, lambda e: e.turn_id == turn.turn_id)
    assert entries[-1]["reason"] == "not_found" and not failed.retryable
    missing = await http.get(f"/conversations/{intruding_conversation}", headers=token_minter.headers(intruder))
    assert missing.status_code == 404
    mine = await http.get(f"/conversations/{second_conversation}", headers=token_minter.headers(client.user_id))
    assert mine.json()["project_id"] == str(project)


async def test_a_turn_is_told_to_its_owner_only(
    chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    turn = await client.send(uuid4(), persona.character_id, "Is it done?")
    done = (await client.until_final(turn.turn_id))[-1]
    told = await http.get(f"/conversations/turns/{turn.turn_id}", headers=token_minter.headers(client.user_id))
    assert told.status_code == 200
    assert told.json()["status"] == "completed" and told.json()["assistant_message_id"] == done["message_id"]
    assert told.json()["conversation_id"] == str(turn.conversation_id)
    other = await http.get(f"/conversations/turns/{turn.turn_id}", headers=token_minter.headers(uuid4()))
    assert other.status_code == 404
