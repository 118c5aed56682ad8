"""A conversation of 10,000 messages with 1,000 branch points, against one of 80 without branches, in the same run.

Runs the platform as bench.e2e_stream does (a broker of its own, the local PostgreSQL and Redis, the stub, chat,
character-gen and one gateway). Two conversations are talked into being through the gateway, then grown in the
database the way chat would have grown them, with a rolling summary on every 40th message of the path (as folding
leaves them): the big one a main path of 9,000 messages with 1,000 alternatives hanging off it, the small one a
path of 80. Measures:
1. the first page (50 messages) of the active path through the gateway, big tree against small;
2. `select` (PUT .../active) of random messages through the gateway, big tree against small;
3. what a prompt is built from: the context read (the path back to the nearest summary) and build_prompt, in
   process, at each conversation's leaf (both paths end as far from their last summary);
4. time to first token of a message in each conversation through the whole platform.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from websockets.asyncio.client import connect

from bench.e2e_stream import (
    Platform,
    character,
    frames_until,
    on_platform,
    pct,
    start_conversation,
    timed_message,
)
from orrery_chat import tree
from orrery_chat.domain import MemoryPolicy, build_prompt
from orrery_chat.settings import load
from orrery_chat.store import read_persona
from orrery_chat.tables import conversations, messages
from orrery_shared.db import Database, make_engine
from orrery_shared.llm.tokens import estimate_tokens

MAIN_PATH = 9_000
BRANCHES = 1_000
SMALL_PATH = 80
SUMMARY_EVERY = 40
SAMPLES = 200


def grown_tree(
    conversation_id: uuid.UUID, root: uuid.UUID, after_seq: int, main_path: int, branches: int
) -> tuple[list[dict[str, Any]], uuid.UUID]:
    """Rows of a main path under `root` and alternatives off it; the main path's leaf."""
    rows: list[dict[str, Any]] = []
    start = datetime.now(UTC) - timedelta(days=30)
    parent, seq = root, after_seq
    main: list[dict[str, Any]] = []
    for index in range(main_path):
        seq += 1
        role = "user" if index % 2 == 0 else "assistant"
        row = {
            "message_id": uuid.uuid4(),
            "conversation_id": conversation_id,
            "seq": seq,
            "parent_id": parent,
            "active_child_id": None,
            "summary": f"The story up to message {seq}." if index % SUMMARY_EVERY == SUMMARY_EVERY - 1 else None,
            "role": role,
            "content": f"{'Question' if role == 'user' else 'Answer'} {index}: " + "words of the saga " * 8,
            "status": "complete",
            "created_at": start + timedelta(seconds=seq),
        }
        if main:
            main[-1]["active_child_id"] = row["message_id"]
        main.append(row)
        parent = uuid.UUID(str(row["message_id"]))
    rows += main
    step = main_path // max(branches, 1)
    for number in range(branches):
        sibling_of = main[number * step + 1]
        seq += 1
        rows.append(
            {
                **sibling_of,
                "message_id": uuid.uuid4(),
                "seq": seq,
                "active_child_id": None,
                "summary": None,
                "content": f"An alternative, number {number}.",
                "created_at": start + timedelta(seconds=seq),
            }
        )
    return rows, main[-1]["message_id"]


async def grow(db: Database, conversation_id: str, main_path: int, branches: int) -> None:
    cid = uuid.UUID(conversation_id)
    async with db.transaction() as tx:
        leaf = await tx.session.scalar(
            sa.select(conversations.c.active_leaf_id).where(conversations.c.conversation_id == cid)
        )
        last_seq = await tx.session.scalar(
            sa.select(conversations.c.last_seq).where(conversations.c.conversation_id == cid)
        )
        assert leaf is not None and last_seq is not None
        rows, new_leaf = grown_tree(cid, leaf, int(last_seq), main_path, branches)
        for start in range(0, len(rows), 1_000):
            await tx.session.execute(messages.insert(), rows[start : start + 1_000])
        await tx.session.execute(
            messages.update().where(messages.c.message_id == leaf).values(active_child_id=rows[0]["message_id"])
        )
        await tx.session.execute(
            conversations.update()
            .where(conversations.c.conversation_id == cid)
            .values(
                active_leaf_id=new_leaf,
                last_seq=int(last_seq) + len(rows),
                message_count=conversations.c.message_count + len(rows),
            )
        )


async def timed(samples: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    spent = []
    for _ in range(samples):
        started = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def line(label: str, big: list[float], small: list[float], goal: str) -> None:
    print(
        f"  {label}: 10,000-message tree p50 {statistics.median(big):.1f} / p99 {pct(big, 0.99):.1f} ms;"
        f" 83-message conversation p50 {statistics.median(small):.1f} / p99 {pct(small, 0.99):.1f} ms;"
        f" ratio p99 {pct(big, 0.99) / pct(small, 0.99):.2f}  ({goal})"
    )


async def conversation(platform: Platform, character_id: str) -> str:
    async with connect(platform.gateway, subprotocols=["bearer", platform.minter.token(platform.user)]) as ws:  # type: ignore[list-item]
        conversation_id = await start_conversation(ws, character_id)
        await ws.send(json.dumps({"type": "message", "conversation_id": conversation_id, "content": "Hello there."}))
        await frames_until(ws, "turn.done", "turn.failed")
    return conversation_id


async def measure(platform: Platform) -> None:
    character_id = await character(platform, platform.minter.token(platform.user))
    small, big = await conversation(platform, character_id), await conversation(platform, character_id)
    settings = load()
    db = Database(make_engine(settings.database_url, settings.db_schema, pool_size=2))
    try:
        await grow(db, big, MAIN_PATH, BRANCHES)
        await grow(db, small, SMALL_PATH, 0)
        headers = {"Authorization": f"Bearer {platform.minter.token(platform.user, ttl=3600)}"}
        base = f"http://127.0.0.1:{platform.gateway_port}"
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            print("conversation trees through the gateway (chat + PostgreSQL), same run")

            async def first_page(conversation_id: str) -> None:
                response = await http.get(f"/api/conversations/{conversation_id}/messages", params={"limit": 50})
                assert response.status_code == 200 and len(response.json()["messages"]) >= 3, response.text

            await first_page(big)  # warm
            line(
                "first page of the active path",
                await timed(SAMPLES, lambda: first_page(big)),
                await timed(SAMPLES, lambda: first_page(small)),
                "goal p99 <= 50 ms",
            )

            nodes = {
                c: [n["message_id"] for n in (await http.get(f"/api/conversations/{c}/tree")).json()["nodes"]]
                for c in (big, small)
            }
            rng = random.Random(7)

            async def select(conversation_id: str) -> None:
                body = {"message_id": rng.choice(nodes[conversation_id])}
                response = await http.put(f"/api/conversations/{conversation_id}/active", json=body)
                assert response.status_code == 200, response.text

            line(
                "select a random message",
                await timed(SAMPLES, lambda: select(big)),
                await timed(SAMPLES, lambda: select(small)),
                "goal p99 <= 50 ms",
            )
            # Back to the main path's end for the prompt measurements.
            await http.put(f"/api/conversations/{big}/active", json={"message_id": nodes[big][-BRANCHES - 1]})
            await http.put(f"/api/conversations/{small}/active", json={"message_id": nodes[small][-1]})

        async def context_and_prompt(conversation_id: str) -> None:
            async with db.transaction() as tx:
                row = (
                    await tx.session.execute(
                        sa.select(conversations.c.active_leaf_id, conversations.c.character_id).where(
                            conversations.c.conversation_id == uuid.UUID(conversation_id)
                        )
                    )
                ).one()
                persona = await read_persona(tx.session, row.character_id)
                context = await tree.context_at(tx.session, row.active_leaf_id)
            assert persona is not None
            build_prompt(persona, context, MemoryPolicy(), estimate_tokens)

        line(
            "prompt context read + build_prompt (in process)",
            await timed(SAMPLES, lambda: context_and_prompt(big)),
            await timed(SAMPLES, lambda: context_and_prompt(small)),
            "independent of tree size: ratio near 1",
        )
    finally:
        await db.dispose()

    async with connect(platform.gateway, subprotocols=["bearer", platform.minter.token(platform.user)]) as ws:  # type: ignore[list-item]
        ttft_big, ttft_small = [], []
        for i in range(20):
            ttft_big.append((await timed_message(ws, big, f"And then {i}?"))[0] * 1000)
            ttft_small.append((await timed_message(ws, small, f"And then {i}?"))[0] * 1000)
    line("time to first token through the platform", ttft_big, ttft_small, "ratio near 1")


if __name__ == "__main__":
    on_platform(measure)
