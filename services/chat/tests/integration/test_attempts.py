"""Two live attempts of one turn (a rebalance handed it on while the first was still streaming): only the newest
writes to the token stream and stores; the database refuses a second reply whatever happens."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
import redis.exceptions
from fastapi import FastAPI
from redis.asyncio import Redis

from orrery_chat.handlers import ChatDeps, handle_turn
from orrery_chat.streams import RedisTokenStream as TokenStream
from orrery_shared.events import ChatTurnCompleted, ChatTurnRequested
from services.chat.tests.integration.harness import Client, deltas
from tests.support.infra import Infra
from tests.support.kafka_spy import spying
from tests.support.llm_stub import StubControl

pytestmark = pytest.mark.integration

App = tuple[FastAPI, httpx.AsyncClient]


async def chat_db(infra: Infra) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        infra.role_url("orrery_chat").replace("+psycopg", ""), options="-csearch_path=chat", autocommit=True
    )


async def test_a_second_live_attempt_fences_the_first_and_the_turn_is_answered_once(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl
) -> None:
    app, _ = chat
    deps: ChatDeps = app.state.chat
    reply = " ".join(f"verse{i}" for i in range(60))
    llm_stub.script(model="orrery-chat", content=reply, tokens_per_second=40, times=2)
    persona = await client.introduce()
    conversation = uuid4()
    async with spying(infra.kafka_bootstrap, ChatTurnCompleted) as spy:
        turn = await client.send(conversation, persona.character_id, "Sing the long song.")
        deadline = time.monotonic() + 30
        while len([e for e in await client.entries(turn.turn_id) if e["type"] == "delta"]) < 10:
            assert time.monotonic() < deadline, "the first attempt never streamed"
            await asyncio.sleep(0.02)
        # The same turn delivered again to another member while the first attempt is alive and streaming.
        await asyncio.wait_for(handle_turn(turn, deps), 60)
        await spy.wait_for(ChatTurnCompleted, lambda e: e.turn_id == turn.turn_id)
        await asyncio.sleep(3)  # the first attempt, fenced, would have finished its reply by now
        completions = spy.of(ChatTurnCompleted, lambda e: e.turn_id == turn.turn_id)

    entries = await client.entries(turn.turn_id)
    kinds = [e["type"] for e in entries]
    assert [int(e["seq"]) for e in entries] == list(range(1, len(entries) + 1))  # no gap, no repeat
    assert kinds.count("restart") == 1 and kinds.count("done") == 1 and kinds[-1] == "done"
    shown = deltas(entries[kinds.index("restart") :])
    assert shown == reply

    db = await chat_db(infra)
    try:
        stored = await (
            await db.execute(
                "SELECT message_id, content FROM messages WHERE turn_id = %s AND role = 'assistant'", (turn.turn_id,)
            )
        ).fetchall()
        attempts = await (await db.execute("SELECT attempts FROM turns WHERE turn_id = %s", (turn.turn_id,))).fetchone()
    finally:
        await db.close()
    assert len(stored) == 1
    assert stored[0][1] == shown  # what the client was shown is what was stored
    assert entries[-1]["message_id"] == str(stored[0][0])
    assert attempts == (2,)
    assert len(completions) == 1


async def test_the_database_refuses_a_second_reply_to_a_turn(
    infra: Infra, chat: App, client: Client, llm_stub: StubControl
) -> None:
    llm_stub.script(model="orrery-chat", content="Once.")
    persona = await client.introduce()
    conversation = uuid4()
    turn = await client.send(conversation, persona.character_id, "Say it once.")
    await client.until_final(turn.turn_id)
    db = await chat_db(infra)
    try:
        with pytest.raises(psycopg.errors.UniqueViolation):
            await db.execute(
                "INSERT INTO messages (message_id, conversation_id, seq, role, content, status, turn_id)"
                " VALUES (%s, %s, 1000, 'assistant', 'Twice.', 'complete', %s)",
                (uuid4(), conversation, turn.turn_id),
            )
    finally:
        await db.close()


async def test_an_older_attempt_writes_nothing_once_a_newer_one_has_written(infra: Infra, client: Client) -> None:
    turn_id = uuid4()
    first = TokenStream(client.redis, turn_id, attempt=1)
    for text in ("a", "b"):
        await first.push(text)
    await first.flush()
    second = TokenStream(client.redis, turn_id, attempt=2)
    await second.restart()
    await first.push("c")  # the first attempt, still streaming, is refused from here on
    await first.flush()
    await second.push("x")
    await second.flush()
    await first.done(uuid4(), "complete")
    await second.done(uuid4(), "complete")

    entries = await client.entries(turn_id)
    assert [(e["seq"], e["type"], e.get("text")) for e in entries] == [
        ("1", "delta", "a"),
        ("2", "delta", "b"),
        ("3", "restart", None),
        ("4", "delta", "x"),
        ("5", "done", None),
    ]
    assert first.superseded and not second.superseded
    assert first.text == "ab"


async def test_a_stored_result_is_announced_once_however_often_the_turn_is_redelivered(client: Client) -> None:
    turn_id = uuid4()
    stream = TokenStream(client.redis, turn_id, attempt=1)
    await stream.push("hi")
    message_id = uuid4()
    await stream.done(message_id, "complete")
    for _ in range(3):
        await TokenStream(client.redis, turn_id).announce_done(message_id, "complete")
    assert [e["type"] for e in await client.entries(turn_id)] == ["delta", "done"]


async def test_a_stream_redis_lost_goes_on_numbering_where_this_process_left_it(client: Client) -> None:
    """A Redis restart loses the stream; the turn's retry in this process must not hand out seqs again that its
    readers already have (they resume after the last one they saw)."""
    turn_id = uuid4()
    first = TokenStream(client.redis, turn_id, attempt=1)
    for text in ("a", "b", "c"):
        await first.push(text)
    await first.flush()
    await client.redis.delete(f"turn:{turn_id}", f"turn:{turn_id}:attempt")  # what a restart leaves
    again = TokenStream(client.redis, turn_id, attempt=2, seq=first.seq)
    await again.restart()
    await again.push("x")
    await again.flush()
    assert [(e["seq"], e["type"]) for e in await client.entries(turn_id)] == [("4", "restart"), ("5", "delta")]


class RedisGoingAway:
    """The service's Redis client, but its `fail_at`-th scripted write fails as if Redis restarted."""

    def __init__(self, redis: Redis, fail_at: int) -> None:
        self._redis = redis
        self._fail_at = fail_at
        self._evals = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    async def eval(self, *args: Any) -> Any:
        self._evals += 1
        if self._evals == self._fail_at:
            raise redis.exceptions.ConnectionError("Redis went away")
        return await self._redis.eval(*args)


async def test_a_turn_retried_elsewhere_after_redis_lost_its_stream_numbers_on_where_its_readers_left_off(
    chat: App, client: Client, llm_stub: StubControl
) -> None:
    app, _ = chat
    deps: ChatDeps = app.state.chat
    persona = await client.introduce()
    reply = " ".join(f"tide{i}" for i in range(30))
    llm_stub.script(model="orrery-chat", content=reply, tokens_per_second=100, times=2)
    turn = ChatTurnRequested(
        turn_id=uuid4(),
        conversation_id=uuid4(),
        user_id=client.user_id,
        character_id=persona.character_id,
        content="Tell me of the tides.",
    )
    going_away = RedisGoingAway(client.redis, fail_at=6)
    flaky = replace(deps, open_stream=lambda turn_id: TokenStream(going_away, turn_id))  # type: ignore[arg-type]

    # A write fails mid-reply: the turn ends there (no delta is skipped over) and the consumer will retry it.
    with pytest.raises(redis.exceptions.ConnectionError):
        await handle_turn(turn, flaky)
    written = await client.entries(turn.turn_id)
    assert written and all(e["type"] == "delta" for e in written)
    # The restarted Redis has lost the stream and the fence; the retry, by another process (nothing of the first
    # attempt in its memory), numbers on from what the first one recorded.
    await client.redis.delete(f"turn:{turn.turn_id}", f"turn:{turn.turn_id}:attempt")
    await handle_turn(turn, deps)  # chat keeps nothing of a turn in memory: as if in another process

    entries = await client.entries(turn.turn_id)
    assert entries[0]["type"] == "restart"
    assert [int(e["seq"]) for e in entries] == list(range(len(written) + 1, len(written) + 1 + len(entries)))
    assert deltas(entries) == reply and entries[-1]["type"] == "done"
