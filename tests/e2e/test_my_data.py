"""A user's own data through the public API: one archive of everything, that re-imports; erased everywhere."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from typing import Any

import httpx
import jwt
import psycopg
import pytest
import websockets

from tests.support.infra import Infra
from tests.support.llm_stub import StubControl
from tests.support.platform import GATEWAY

from .test_gateway import conversation_with_character, guest

pytestmark = pytest.mark.e2e

SCHEMAS = ("auth", "characters", "chat", "dossier")
SNAPSHOT = {"characters": [{"name": "Mara", "description": "A smuggler."}], "themes": ["Exile"]}


def leftovers(infra: Infra, value: str, *, text_too: bool) -> list[str]:
    """Every column of every service schema still holding `value`: uuid columns equal to it and, with
    `text_too`, text and JSON columns mentioning it (outbox payloads, say)."""
    found = []
    with psycopg.connect(infra.postgres_admin_url, autocommit=True) as conn:
        columns = conn.execute(
            """
            SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = ANY(%s) AND data_type IN ('uuid', 'text', 'jsonb', 'ARRAY')
            """,
            (list(SCHEMAS),),
        ).fetchall()
        for schema, table, column, kind in columns:
            if kind == "uuid":
                where = f'"{column}" = %s::uuid'
            elif text_too:
                where = f'"{column}"::text LIKE %s'
            else:
                continue
            param = value if kind == "uuid" else f"%{value}%"
            row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE {where}', (param,)).fetchone()
            if row is not None and row[0]:
                found.append(f"{schema}.{table}.{column}")
    return found


async def eventually_clean(infra: Infra, value: str, *, text_too: bool, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while found := await asyncio.to_thread(leftovers, infra, value, text_too=text_too):
        assert time.monotonic() < deadline, f"{value} is still held in {found}"
        await asyncio.sleep(0.5)


def jwt_subject(token: str) -> str:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return str(claims["sub"])


async def test_the_export_holds_everything_and_re_imports_and_erasing_leaves_no_row_anywhere(
    stub: StubControl, infra: Infra
) -> None:
    token = await guest()
    me = jwt_subject(token)
    conversation_id, character_id = await conversation_with_character(token)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=GATEWAY, headers=auth, timeout=60) as http:
        project = (await http.get(f"/api/conversations/{conversation_id}")).json()["project_id"]
        created = await http.post(f"/api/dossiers/{project}", json={"snapshot_json": SNAPSHOT, "title": "Exiles"})
        assert created.status_code == 201, created.text

        exported = await http.get("/api/me/export")
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"] == "application/zip"
        assert "attachment" in exported.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    names = archive.namelist()
    [card] = [n for n in names if n.startswith("characters/") and n.endswith(f"{character_id}.png")]
    [chat] = [n for n in names if n.startswith("chats/") and n.endswith(f"{conversation_id}.jsonl")]
    assert {"README.txt", "account.json", "characters.json", "conversations.json", "usage.json"} <= set(names)
    assert json.loads(archive.read("account.json"))["id"] == me
    dossier = json.loads(archive.read(f"dossiers/{project}.json"))
    assert dossier["title"] == "Exiles" and [v["version"] for v in dossier["versions"]] == [1]
    assert json.loads(archive.read("usage.json"))["by_model"][0]["replies"] == 1
    exported_chat = [json.loads(line) for line in archive.read(chat).decode().splitlines()]

    # The parts import again: the card as a character, the chat as a conversation with it, for another user.
    other = {"Authorization": f"Bearer {await guest()}"}
    async with httpx.AsyncClient(base_url=GATEWAY, headers=other, timeout=60) as http:
        imported = await http.post(
            "/api/characters/import", content=archive.read(card), headers={"Content-Type": "image/png"}
        )
        assert imported.status_code == 201, imported.text
        new_character = imported.json()["id"]
        deadline = time.monotonic() + 30
        while True:  # the character reaches chat through its event
            again = await http.post(
                f"/api/conversations/import?character_id={new_character}",
                content=archive.read(chat),
                headers={"Content-Type": "application/jsonl"},
            )
            if again.status_code != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert again.status_code == 201, again.text
        copied = await http.get(f"/api/conversations/{again.json()['conversation_id']}/messages")
        assert [m["content"] for m in copied.json()["messages"][::-1]] == [m["mes"] for m in exported_chat[1:]]

    # Erasing: the account is gone from every service, and its tokens stop working at once.
    async with httpx.AsyncClient(base_url=GATEWAY, headers=auth, timeout=60) as http:
        erased = await http.delete("/api/me")
        assert erased.status_code == 204, erased.text
        refused = await http.get("/api/conversations")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "user_not_found"
    async with websockets.connect(GATEWAY.replace("http", "ws") + f"/ws?token={token}") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 4401
    await eventually_clean(infra, me, text_too=True)
    for owned in (conversation_id, character_id, project):
        await eventually_clean(infra, owned, text_too=False)
