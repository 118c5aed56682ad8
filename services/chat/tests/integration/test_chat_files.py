"""Chat files through the real service: export a conversation, import it again, and go on chatting."""

from __future__ import annotations

import json
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from services.chat.tests.integration.harness import Client, deltas
from tests.support.llm_stub import StubControl
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration

App = tuple[FastAPI, httpx.AsyncClient]


async def test_an_exported_chat_imports_as_a_new_conversation_that_goes_on(
    chat: App, client: Client, llm_stub: StubControl, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    conversation = uuid4()
    llm_stub.script(model="orrery-chat", content="The Veil hides three moons.")
    turn = await client.send(conversation, persona.character_id, "What does the Veil hide?")
    await client.until_final(turn.turn_id)
    headers = token_minter.headers(client.user_id)

    exported = await http.get(f"/conversations/{conversation}/export", headers=headers)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/jsonl")
    assert f"{conversation}.jsonl" in exported.headers["content-disposition"]
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines[0]["character_name"] == persona.name
    assert [(m["is_user"], m["mes"]) for m in lines[1:]] == [
        (False, persona.greeting),
        (True, "What does the Veil hide?"),
        (False, "The Veil hides three moons."),
    ]

    usage = (await http.get("/conversations/usage", headers=headers)).json()["by_model"]
    assert [(u["model"], u["replies"]) for u in usage] == [("orrery-chat", 1)] and usage[0]["completion_tokens"] > 0

    imported = await http.post(
        f"/conversations/import?character_id={persona.character_id}",
        content=exported.content,
        headers={**headers, "Content-Type": "application/jsonl"},
    )
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    assert copy["conversation_id"] != str(conversation) and copy["message_count"] == 3
    assert copy["title"] == "What does the Veil hide?" and copy["character"]["name"] == persona.name
    listed = await http.get(f"/conversations/{copy['conversation_id']}/messages", headers=headers)
    assert [(m["role"], m["content"]) for m in listed.json()["messages"][::-1]] == [
        ("assistant", persona.greeting),
        ("user", "What does the Veil hide?"),
        ("assistant", "The Veil hides three moons."),
    ]

    # The imported conversation is a conversation like any other: its history is in the next prompt.
    llm_stub.script(model="orrery-chat", content="Their names are lost.")
    next_turn = await client.send(copy["conversation_id"], persona.character_id, "Name them.")
    assert deltas(await client.until_final(next_turn.turn_id)) == "Their names are lost."
    prompt = llm_stub.chat_requests(model="orrery-chat")[-1]["body"]["messages"]
    assert [m["content"] for m in prompt[-3:]] == [
        "What does the Veil hide?",
        "The Veil hides three moons.",
        "Name them.",
    ]


async def test_an_import_is_refused_cleanly_for_a_bad_file_or_a_character_the_user_cannot_see(
    chat: App, client: Client, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    someone_elses = await client.introduce(owner=uuid4(), name="Not Yours")
    headers = token_minter.headers(client.user_id)
    good = b'{"user_name": "Ada", "character_name": "X"}\n{"mes": "Hi", "is_user": true}\n'

    bad = await http.post(
        f"/conversations/import?character_id={persona.character_id}", content=good + b"{oops\n", headers=headers
    )
    assert bad.status_code == 422 and "line 3" in bad.json()["error"]["message"]
    hidden = await http.post(
        f"/conversations/import?character_id={someone_elses.character_id}", content=good, headers=headers
    )
    assert hidden.status_code == 404
    unknown = await http.post(f"/conversations/import?character_id={uuid4()}", content=good, headers=headers)
    assert unknown.status_code == 404
    form = await http.post(
        f"/conversations/import?character_id={persona.character_id}", files={"file": ("c.jsonl", good)}, headers=headers
    )
    assert form.status_code == 415
    listed = await http.get("/conversations", headers=headers)
    assert listed.json()["conversations"] == []  # nothing half-imported
    assert (await http.get(f"/conversations/{uuid4()}/export", headers=headers)).status_code == 404
