"""Conversations as trees, through the real broker, database, Redis and LLM stub: regenerate, edit, continue,
select and delete, and memory that follows the active branch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from orrery_chat.settings import ChatSettings
from orrery_shared.events import ChatTurnCompleted
from orrery_shared.kafka import publish_event
from services.chat.tests.integration.harness import (
    Client,
    character,
    deltas,
    fresh_groups,
    llm_env,
    migrate,
    running_app,
)
from tests.support.infra import Infra
from tests.support.kafka_spy import spying
from tests.support.llm_stub import StubControl
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration

App = tuple[FastAPI, httpx.AsyncClient]
WINDOW = 120  # tokens: small, so a few turns fold the oldest messages into a summary


@pytest.fixture(scope="module")
async def chat(infra: Infra, llm_stub_url: str, token_minter: TokenMinter) -> AsyncIterator[App]:
    await migrate(infra)
    env = pytest.MonkeyPatch()
    for name, value in llm_env(llm_stub_url).items():
        env.setenv(name, value)
    env.setenv("ORRERY_JWT_JWKS", token_minter.jwks)
    settings = ChatSettings(
        consumer_group_prefix=await fresh_groups(infra), character_wait_seconds=10, memory_window_tokens=WINDOW
    )
    try:
        async with running_app(settings) as running:
            yield running
    finally:
        env.undo()


class Talk:
    """One conversation, driven as the gateway would, read back as a client would."""

    def __init__(self, client: Client, http: httpx.AsyncClient, headers: dict[str, str], character_id: UUID) -> None:
        self.client, self.http, self.headers, self.character_id = client, http, headers, character_id
        self.conversation_id = uuid4()

    async def turn(self, content: str = "", **extra: Any) -> str:
        """Send a turn and wait for it; the stored message's id."""
        turn = await self.client.send(self.conversation_id, self.character_id, content, **extra)
        entries = await self.client.until_final(turn.turn_id)
        assert entries[-1]["type"] == "done", entries[-1]
        return entries[-1]["message_id"]

    async def path(self) -> list[dict[str, Any]]:
        """The active path, oldest first."""
        response = await self.http.get(f"/conversations/{self.conversation_id}/messages", headers=self.headers)
        assert response.status_code == 200, response.text
        return list(reversed(response.json()["messages"]))

    async def select(self, message_id: str) -> httpx.Response:
        body = {"message_id": message_id}
        return await self.http.put(f"/conversations/{self.conversation_id}/active", json=body, headers=self.headers)

    async def tree(self) -> dict[str, Any]:
        response = await self.http.get(f"/conversations/{self.conversation_id}/tree", headers=self.headers)
        assert response.status_code == 200, response.text
        tree: dict[str, Any] = response.json()
        return tree


@pytest.fixture
async def talk(chat: App, client: Client, token_minter: TokenMinter) -> Talk:
    _, http = chat
    persona = await client.introduce()
    return Talk(client, http, token_minter.headers(client.user_id), persona.character_id)


def contents(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    return [m["content"] for m in messages]


def last_prompt(llm_stub: StubControl) -> list[dict[str, str]]:
    prompt: list[dict[str, str]] = llm_stub.chat_requests(model="orrery-chat")[-1]["body"]["messages"]
    return prompt


async def test_regenerating_the_second_of_three_replies_adds_an_active_alternative_and_keeps_the_old_branch(
    talk: Talk, llm_stub: StubControl
) -> None:
    for reply in ("First reply.", "Second reply.", "Third reply."):
        llm_stub.script(model="orrery-chat", content=reply)
    await talk.turn("One?")
    second = await talk.turn("Two?")
    third = await talk.turn("Three?")
    greeting = (await talk.path())[0]["content"]

    llm_stub.script(model="orrery-chat", content="Second reply, retold.")
    retold = await talk.turn(mode="regenerate", message_id=second)

    path = await talk.path()
    assert contents(path) == [greeting, "One?", "First reply.", "Two?", "Second reply, retold."]
    assert path[-1]["message_id"] == retold and path[-1]["parent_id"] == path[-2]["message_id"]
    assert (path[-1]["sibling_index"], path[-1]["sibling_count"]) == (2, 2)
    # The regenerate's prompt holds nothing from the replaced reply or below it.
    prompt = contents(last_prompt(llm_stub)[1:])
    assert prompt == [greeting, "One?", "First reply.", "Two?"]

    # The old reply and everything under it are still there: selecting it brings its branch back, to its end.
    selected = await talk.select(second)
    assert selected.status_code == 200 and selected.json()["active_leaf_id"] == third
    assert contents(await talk.path())[-3:] == ["Second reply.", "Three?", "Third reply."]
    assert (await talk.path())[-3]["sibling_index"] == 1
    tree = await talk.tree()
    assert len(tree["nodes"]) == 8 and tree["active_leaf_id"] == third
    assert {n["message_id"] for n in tree["nodes"] if not n["active"]} == {retold}


async def test_editing_a_user_message_forks_and_each_branch_prompts_only_its_own_past(
    talk: Talk, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="About the moons.")
    llm_stub.script(model="orrery-chat", content="About the rings.")
    await talk.turn("Tell me about the moons.")
    await talk.turn("And the rings?")
    asked = (await talk.path())[-2]
    assert asked["content"] == "And the rings?"

    llm_stub.script(model="orrery-chat", content="About the comets.")
    await talk.turn("And the comets?", mode="edit", message_id=asked["message_id"])
    edited_prompt = contents(last_prompt(llm_stub))
    assert edited_prompt[-1] == "And the comets?"
    assert "And the rings?" not in edited_prompt and "About the rings." not in edited_prompt
    path = await talk.path()
    assert contents(path)[-2:] == ["And the comets?", "About the comets."]
    assert (path[-2]["sibling_index"], path[-2]["sibling_count"]) == (2, 2)

    llm_stub.script(model="orrery-chat", content="Onwards.")
    await talk.turn("Go on.")
    assert "And the rings?" not in contents(last_prompt(llm_stub))

    # Back on the first branch, the comets were never mentioned.
    rings_reply = next(n for n in (await talk.tree())["nodes"] if n["preview"] == "About the rings.")
    assert (await talk.select(rings_reply["message_id"])).status_code == 200
    llm_stub.script(model="orrery-chat", content="Still the rings.")
    await talk.turn("More?")
    prompt = contents(last_prompt(llm_stub))
    assert "And the rings?" in prompt and "About the rings." in prompt
    assert not any("comets" in text or "Onwards" in text or text == "Go on." for text in prompt)
    tree = await talk.tree()
    users = [n["preview"] for n in tree["nodes"] if n["role"] == "user"]
    assert {"And the rings?", "And the comets?"} <= set(users)


FACT = "My secret name is Quillon and I was born on Tethys."


async def test_a_fact_said_only_on_one_branch_never_reaches_a_prompt_on_another(
    talk: Talk, llm_stub: StubControl
) -> None:
    await talk.turn("Hello, captain.")
    fork_point = (await talk.path())[-1]["message_id"]  # the character's first reply: both branches grow from it

    # Branch B: the fact, then enough talk to fold it out of the window into the branch's summary.
    await talk.turn(FACT)
    for number in range(8):
        await talk.turn(f"Tell me about waypoint {number} on the spiral route.")
    branch_b_leaf = (await talk.path())[-1]["message_id"]
    summaries = [contents(r["body"]["messages"])[-1] for r in llm_stub.chat_requests(model="orrery-summary")]
    assert any("Quillon" in s for s in summaries), "the fact was never folded into branch B's summary"
    await talk.turn("What is my secret name?")
    assert "Quillon" in last_prompt(llm_stub)[0]["content"]  # branch B remembers it through its summary
    before_a = len(llm_stub.requests(path="/v1/chat/completions"))

    # Branch A: from the same fork point, as long again, folding too.
    assert (await talk.select(fork_point)).status_code == 200
    fork_user = (await talk.tree())["nodes"]
    fact_message = next(n for n in fork_user if n["preview"].startswith("My secret name"))
    await talk.turn("I am nobody in particular.", mode="edit", message_id=fact_message["message_id"])
    for number in range(8):
        await talk.turn(f"Tell me about lighthouse {number} on the northern coast.")
    await talk.turn("What is my secret name?")

    on_branch_a = llm_stub.requests(path="/v1/chat/completions")[before_a:]
    assert len(on_branch_a) >= 10
    assert any(r["body"]["model"] == "orrery-summary" for r in on_branch_a), "branch A never folded"
    for request in on_branch_a:
        assert "Quillon" not in str(request["body"]["messages"]), request["body"]["model"]
    assert (await talk.select(branch_b_leaf)).status_code == 200


async def test_continue_extends_the_last_reply_and_a_redelivery_does_not_extend_it_twice(
    infra: Infra, talk: Talk, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="Once upon a time")
    reply = await talk.turn("A story, please.")
    llm_stub.script(model="orrery-chat", content=", there was a comet.")
    async with spying(infra.kafka_bootstrap, ChatTurnCompleted) as spy:
        turn = await talk.client.send(talk.conversation_id, talk.character_id, "", mode="continue", message_id=reply)
        entries = await talk.client.until_final(turn.turn_id)
        completed = await spy.wait_for(ChatTurnCompleted, lambda e: e.turn_id == turn.turn_id)

    assert deltas(entries) == ", there was a comet."  # the stream carries what is added
    assert entries[-1]["message_id"] == reply
    assert (
        completed.mode == "continue" and completed.assistant_message.content == "Once upon a time, there was a comet."
    )
    prompt = last_prompt(llm_stub)
    assert prompt[-2] == {"role": "assistant", "content": "Once upon a time"} and prompt[-1]["role"] == "system"
    path = await talk.path()
    assert path[-1]["content"] == "Once upon a time, there was a comet." and path[-1]["message_id"] == reply

    await talk.client.send(
        talk.conversation_id, talk.character_id, "", mode="continue", message_id=reply, turn_id=turn.turn_id
    )  # the same turn delivered again
    await talk.client.until_final(turn.turn_id)
    assert (await talk.path())[-1]["content"] == "Once upon a time, there was a comet."


async def test_a_message_that_cannot_take_the_change_is_refused_and_nothing_is_added(
    talk: Talk, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="Hi.")
    reply = await talk.turn("Hello?")
    path = await talk.path()
    greeting, asked = path[0]["message_id"], path[1]["message_id"]

    cases = [
        ("regenerate", greeting, "not_allowed"),  # the greeting is not generated
        ("continue", asked, "not_allowed"),
        ("regenerate", str(uuid4()), "message_not_found"),
    ]
    for mode, message_id, reason in cases:
        turn = await talk.client.send(talk.conversation_id, talk.character_id, "", mode=mode, message_id=message_id)
        final = (await talk.client.until_final(turn.turn_id))[-1]
        assert final["type"] == "error" and final["reason"].startswith(reason), (mode, final)
    llm_stub.script(model="orrery-chat", content="Later.")
    await talk.turn("Go on.")
    continued = await talk.client.send(talk.conversation_id, talk.character_id, "", mode="continue", message_id=reply)
    assert (await talk.client.until_final(continued.turn_id))[-1]["reason"].startswith("not_allowed")  # has a reply
    assert len((await talk.tree())["nodes"]) == 5


async def test_a_failed_regenerate_leaves_the_old_reply_shown_and_a_user_message_can_be_answered_again(
    talk: Talk, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="The first answer.")
    reply = await talk.turn("Answer me.")
    llm_stub.script(model="orrery-chat", status=500, times=20)
    failed = await talk.client.send(talk.conversation_id, talk.character_id, "", mode="regenerate", message_id=reply)
    assert (await talk.client.until_final(failed.turn_id, timeout=60))[-1]["type"] == "error"
    assert (await talk.path())[-1]["message_id"] == reply  # not left ending at the question
    llm_stub.reset()

    # A reply that failed leaves the user's message unanswered: regenerating that message answers it.
    llm_stub.script(model="orrery-chat", status=500, times=20)
    unanswered = await talk.client.send(talk.conversation_id, talk.character_id, "And again?")
    assert (await talk.client.until_final(unanswered.turn_id, timeout=60))[-1]["type"] == "error"
    question = (await talk.path())[-1]
    assert question["content"] == "And again?"
    llm_stub.reset()
    llm_stub.script(model="orrery-chat", content="Here you are.")
    answered = await talk.turn(mode="regenerate", message_id=question["message_id"])
    path = await talk.path()
    assert path[-1]["message_id"] == answered and path[-1]["parent_id"] == question["message_id"]
    assert contents(path)[-2:] == ["And again?", "Here you are."]


async def test_editing_a_reply_adds_the_users_text_as_an_alternative_without_asking_the_model(
    talk: Talk, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="A dull answer.")
    reply = await talk.turn("Say something.")
    asked = len(llm_stub.chat_requests(model="orrery-chat"))
    edited = await talk.turn("A much better answer.", mode="edit", message_id=reply)
    assert len(llm_stub.chat_requests(model="orrery-chat")) == asked
    path = await talk.path()
    assert path[-1]["message_id"] == edited and path[-1]["content"] == "A much better answer."
    assert (path[-1]["sibling_index"], path[-1]["sibling_count"]) == (2, 2)


async def test_deleting_a_message_removes_its_subtree_and_moves_the_path_to_an_alternative(
    talk: Talk, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="Reply one.")
    first = await talk.turn("Question?")
    llm_stub.script(model="orrery-chat", content="Reply two.")
    second = await talk.turn(mode="regenerate", message_id=first)
    llm_stub.script(model="orrery-chat", content="Deeper.")
    await talk.turn("Deeper?")

    deleted = await talk.http.delete(f"/conversations/{talk.conversation_id}/messages/{second}", headers=talk.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["active_leaf_id"] == first
    assert contents(await talk.path())[-1] == "Reply one."
    assert len((await talk.tree())["nodes"]) == 3
    greeting = (await talk.path())[0]["message_id"]
    only_start = await talk.http.delete(
        f"/conversations/{talk.conversation_id}/messages/{greeting}", headers=talk.headers
    )
    assert only_start.status_code == 409 and only_start.json()["error"]["code"] == "not_allowed"
    missing = await talk.http.delete(f"/conversations/{talk.conversation_id}/messages/{uuid4()}", headers=talk.headers)
    assert missing.status_code == 404


async def test_a_message_is_not_deleted_while_a_reply_is_written_below_it(talk: Talk, llm_stub: StubControl) -> None:
    llm_stub.script(model="orrery-chat", content="Quick.")
    await talk.turn("First.")
    llm_stub.script(model="orrery-chat", content=" ".join(["slow"] * 40), tokens_per_second=20)
    turn = await talk.client.send(talk.conversation_id, talk.character_id, "Second, slowly.")
    while not [e for e in await talk.client.entries(turn.turn_id) if e["type"] == "delta"]:
        await asyncio.sleep(0.02)
    asked = (await talk.path())[-1]
    assert asked["content"] == "Second, slowly."
    busy = await talk.http.delete(
        f"/conversations/{talk.conversation_id}/messages/{asked['message_id']}", headers=talk.headers
    )
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "busy"
    await talk.client.until_final(turn.turn_id)


async def test_the_active_path_is_paged_from_the_newest_with_a_cursor(talk: Talk, llm_stub: StubControl) -> None:
    for number in range(5):
        llm_stub.script(model="orrery-chat", content=f"Answer {number}.")
        await talk.turn(f"Question {number}?")
    url = f"/conversations/{talk.conversation_id}/messages"
    seen: list[str] = []
    before: str | None = None
    pages = 0
    while True:
        params = {"limit": "4", **({"before": before} if before else {})}
        page = (await talk.http.get(url, params=params, headers=talk.headers)).json()
        seen += contents(page["messages"])
        pages += 1
        before = page["next_before"]
        if before is None:
            break
    assert pages == 3 and len(seen) == 11 and seen[0] == "Answer 4." and seen[-2] == "Question 0?"
    stranger = await talk.http.get(url, params={"before": str(uuid4())}, headers=talk.headers)
    assert stranger.status_code == 404


async def test_a_cards_alternate_greetings_are_the_first_messages_alternatives(
    chat: App, client: Client, token_minter: TokenMinter, llm_stub: StubControl
) -> None:
    _, http = chat
    created = character(client.user_id).model_copy(
        update={"alternate_greetings": ["You again? Sit.", "The hold is full; mind the crates."]}
    )
    await publish_event(client.broker, created)
    talk = Talk(client, http, token_minter.headers(client.user_id), created.character_id)
    llm_stub.script(model="orrery-chat", content="Aye.")
    await talk.turn("Hello?")
    first = (await talk.path())[0]
    assert (first["content"], first["sibling_index"], first["sibling_count"]) == (created.greeting, 1, 3)

    alternative = next(n for n in (await talk.tree())["nodes"] if n["preview"] == "You again? Sit.")
    assert (await talk.select(alternative["message_id"])).status_code == 200
    assert contents(await talk.path()) == ["You again? Sit."]
    llm_stub.script(model="orrery-chat", content="Sitting.")
    await talk.turn("Fine.")
    assert contents(last_prompt(llm_stub)[1:]) == ["You again? Sit.", "Fine."]
