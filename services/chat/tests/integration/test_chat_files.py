"""Chat files through the real service: export a conversation, import it again, and go on chatting."""

from __future__ import annotations

import asyncio
import json
import time
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from services.chat.tests.integration.harness import Client, deltas
from services.chat.tests.sillytavern import SILLYTAVERN_CHAT
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
    no_file = await http.post(
        f"/conversations/import?character_id={persona.character_id}",
        files={"other": ("c.jsonl", good)},
        headers=headers,
    )
    assert no_file.status_code == 422 and "`file`" in no_file.json()["error"]["message"]
    listed = await http.get("/conversations", headers=headers)
    assert listed.json()["conversations"] == []  # nothing half-imported
    assert (await http.get(f"/conversations/{uuid4()}/export", headers=headers)).status_code == 404


async def test_a_sillytavern_chat_with_swipes_imports_as_a_tree_and_exports_and_imports_back_the_same(
    chat: App, client: Client, token_minter: TokenMinter
) -> None:
    _, http = chat
    persona = await client.introduce()
    headers = token_minter.headers(client.user_id)
    # As SillyTavern's own import sends it: a form with the file (once chat has heard of the character).
    deadline = time.monotonic() + 10
    while True:
        imported = await http.post(
            f"/conversations/import?character_id={persona.character_id}",
            files={"file": ("Captain Marrow - 2024-06-05@15h04m11s.jsonl", SILLYTAVERN_CHAT.encode())},
            headers=headers,
        )
        if imported.status_code != 404 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert imported.status_code == 201, imported.text
    first = imported.json()["conversation_id"]
    path = (await http.get(f"/conversations/{first}/messages", headers=headers)).json()["messages"][::-1]
    assert [m["content"] for m in path] == [
        "Welcome aboard the Kettle, stranger.",
        "Where are we headed?",
        "To the Veil, if the engines hold.",
    ]
    assert (path[-1]["sibling_index"], path[-1]["sibling_count"]) == (2, 2)  # the swipes, in their order
    tree = (await http.get(f"/conversations/{first}/tree", headers=headers)).json()
    assert {n["preview"] for n in tree["nodes"] if not n["active"]} == {"Nowhere good."}

    exported = (await http.get(f"/conversations/{first}/export", headers=headers)).text
    lines = [json.loads(line) for line in exported.splitlines()]
    assert lines[-1]["swipes"] == ["Nowhere good.", "To the Veil, if the engines hold."] and lines[-1]["swipe_id"] == 1
    again = await http.post(
        f"/conversations/import?character_id={persona.character_id}",
        content=exported.encode(),
        headers={**headers, "Content-Type": "application/jsonl"},
    )
    assert again.status_code == 201, again.text
    second = again.json()["conversation_id"]
    copied = (await http.get(f"/conversations/{second}/messages", headers=headers)).json()["messages"]
    assert [(m["role"], m["content"], m["sibling_index"], m["sibling_count"]) for m in copied] == [
        (m["role"], m["content"], m["sibling_index"], m["sibling_count"]) for m in path[::-1]
    ]
    reexported = (await http.get(f"/conversations/{second}/export", headers=headers)).text
    strip = [
        {k: v for k, v in json.loads(line).items() if k not in ("extra", "chat_metadata")}
        for line in reexported.splitlines()
    ]
    assert strip == [{k: v for k, v in line.items() if k not in ("extra", "chat_metadata")} for line in lines]
