"""A conversation's next reply is requested while its turn's statement runs, from the prompt chat expects; it is
used only when the database agrees, and otherwise dropped unseen."""

from __future__ import annotations

from uuid import uuid4

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.chat.tests.integration.harness import Client, deltas
from tests.support.infra import Infra
from tests.support.llm_stub import StubControl
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration

App = tuple[FastAPI, httpx.AsyncClient]


def guesses(outcome: str) -> float:
    return REGISTRY.get_sample_value("orrery_chat_prompt_guesses_total", {"outcome": outcome}) or 0.0


async def test_a_next_turn_is_answered_by_the_request_sent_before_the_database_answered(
    chat: App, client: Client, llm_stub: StubControl
) -> None:
    persona = await client.introduce()
    conversation = uuid4()
    first = await client.send(conversation, persona.character_id, "Where were you born?")
    await client.until_final(first.turn_id)
    used, discarded = guesses("used"), guesses("discarded")
    llm_stub.reset()

    second = await client.send(conversation, persona.character_id, "And your first ship?")
    entries = await client.until_final(second.turn_id)

    assert entries[-1]["type"] == "done" and deltas(entries)
    assert (guesses("used") - used, guesses("discarded") - discarded) == (1, 0)
    requests = llm_stub.chat_requests(model="orrery-chat")
    assert len(requests) == 1  # the guessed request was the only one, and it carried the whole exchange
    assert [m["content"] for m in requests[0]["body"]["messages"][1:]] == [
        persona.greeting,
        "Where were you born?",
        deltas(await client.entries(first.turn_id)),
        "And your first ship?",
    ]


async def test_a_guess_the_database_contradicts_is_dropped_before_any_of_its_deltas_is_written(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl
) -> None:
    persona = await client.introduce()
    conversation = uuid4()
    first = await client.send(conversation, persona.character_id, "Remember the red comet.")
    await client.until_final(first.turn_id)
    # Another process changed the conversation since (here: a memory it saved), which this one cannot know.
    async with await psycopg.AsyncConnection.connect(
        infra.role_url("orrery_chat").replace("+psycopg", ""), options="-csearch_path=chat", autocommit=True
    ) as other:
        await other.execute(
            "UPDATE conversations SET memory_summary = 'They spoke of a blue comet.' WHERE conversation_id = %s",
            (conversation,),
        )
    used, discarded = guesses("used"), guesses("discarded")
    llm_stub.reset()
    # Slow to start, so the guess is still waiting for its first token when the database contradicts it. The stub
    # answers requests in the order they arrive (the guess normally first, unless it was dropped before it was
    # sent), so which reply belongs to which request is read from its log.
    replies = ["FIRST SCRIPTED REPLY", "Second scripted reply."]
    for reply in replies:
        llm_stub.script(model="orrery-chat", content=reply, ttft_ms=300)

    second = await client.send(conversation, persona.character_id, "Which comet?")
    entries = await client.until_final(second.turn_id)

    assert (guesses("used") - used, guesses("discarded") - discarded) == (0, 1)
    systems = [r["body"]["messages"][0]["content"] for r in llm_stub.chat_requests(model="orrery-chat")]
    answered = [i for i, system in enumerate(systems) if "blue comet" in system]  # built from the database
    assert len(answered) == 1 and len(systems) <= 2  # at most the guess besides it
    assert deltas(entries) == replies[answered[0]]  # nothing of the dropped request reached the stream
    assert [int(e["seq"]) for e in entries] == list(range(1, len(entries) + 1))


async def test_a_next_turn_cancelled_while_queued_streams_nothing_and_keeps_an_empty_cancelled_reply(
    chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    first = await client.send(conversation, persona.character_id, "Tell me about the moons.")
    await client.until_final(first.turn_id)
    used, discarded = guesses("used"), guesses("discarded")
    llm_stub.script(model="orrery-chat", content="A reply nobody waits for.", ttft_ms=300)
    turn_id = uuid4()
    await client.redis.set(f"turn:{turn_id}:cancel", "1", ex=60)  # the user cancelled while it was queued

    await client.send(conversation, persona.character_id, "Never mind.", turn_id=turn_id)
    entries = await client.until_final(turn_id)

    assert [(e["type"], e.get("status")) for e in entries] == [("done", "cancelled")]
    assert (guesses("used") - used) + (guesses("discarded") - discarded) == 1  # the guess went out regardless
    listed = await http.get(f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id))
    assert [(m["content"], m["status"]) for m in listed.json()["messages"]][-2:] == [
        ("Never mind.", "complete"),
        ("", "cancelled"),
    ]
