"""A chat process killed mid-reply: the redelivered turn restarts its stream and lands exactly once.

Real processes, killed with SIGKILL: no mocks stand in for the crash. This module runs no in-process chat
service, so the two processes below are the only consumers of their group.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import httpx
import pytest

from orrery_shared.events import ChatTurnCompleted
from services.chat.tests.integration.harness import client_for, deltas, fresh_groups, llm_env, migrate
from tests.support.infra import Infra
from tests.support.kafka_spy import spying
from tests.support.llm_stub import StubControl
from tests.support.processes import free_port, start_module, stop
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.integration


@contextmanager
def chat_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_module(
        "orrery_chat",
        {**env, "ORRERY_CHAT_PORT": str(port)},
        f"http://127.0.0.1:{port}/readyz",
        f"chat-crash-{port}.log",
    )
    try:
        yield proc
    finally:
        stop(proc)


@pytest.mark.parametrize("mode", ["reply", "regenerate", "continue"])
async def test_a_turn_interrupted_by_a_crash_is_restarted_and_stored_once(
    infra: Infra, llm_stub_url: str, llm_stub: StubControl, token_minter: TokenMinter, mode: str
) -> None:
    await migrate(infra)
    env = {
        **os.environ,
        **infra.service_env(),
        **llm_env(llm_stub_url),
        "ORRERY_JWT_JWKS": token_minter.jwks,
        "ORRERY_CHAT_CONSUMER_GROUP_PREFIX": await fresh_groups(infra),
    }
    reply = " ".join(f"syllable{i}" for i in range(60))
    # Both attempts get the same scripted text, streamed slowly enough to kill the first one halfway (after a
    # quick first reply, for the modes that work on one).
    slow = {"model": "orrery-chat", "content": reply, "tokens_per_second": 30, "times": 2}
    llm_stub.script(*([] if mode == "reply" else [{"model": "orrery-chat", "content": "Begin."}]), slow)

    async with client_for(infra) as client, spying(infra.kafka_bootstrap, ChatTurnCompleted) as spy:
        with chat_process(env, free_port()) as first:
            persona = await client.introduce()
            conversation = uuid4()
            turn = await client.send(conversation, persona.character_id, "Sing me the long song.")
            first_turn = turn.turn_id
            if mode != "reply":
                first_reply = (await client.until_final(turn.turn_id))[-1]["message_id"]
                turn = await client.send(conversation, persona.character_id, "", mode=mode, message_id=first_reply)
            while len([e for e in await client.entries(turn.turn_id) if e["type"] == "delta"]) < 30:
                await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        before_restart = await client.entries(turn.turn_id)
        assert before_restart[-1]["type"] == "delta"

        port = free_port()
        with chat_process(env, port):
            entries = await client.until_final(turn.turn_id, timeout=90)
            completed = await spy.wait_for(ChatTurnCompleted, lambda e: e.turn_id == turn.turn_id)
            await asyncio.sleep(2)  # a duplicate, if one were coming, would arrive by now
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                response = await http.get(
                    f"/conversations/{conversation}/messages", headers=token_minter.headers(client.user_id)
                )
            listed = response.json()["messages"][::-1]

    kinds = [e["type"] for e in entries]
    restart = kinds.index("restart")
    assert restart >= 30 and kinds[-1] == "done"
    assert [int(e["seq"]) for e in entries] == list(range(1, len(entries) + 1))  # no gap, no repeat
    assert deltas(entries[restart:]) == reply
    assert len(spy.of(ChatTurnCompleted, lambda e: e.turn_id == turn.turn_id)) == 1
    stored = "Begin." + reply if mode == "continue" else reply
    assert completed.assistant_message.content == stored
    assert [m["content"] for m in listed] == [persona.greeting, "Sing me the long song.", stored]
    if mode == "regenerate":
        assert (listed[-1]["sibling_index"], listed[-1]["sibling_count"]) == (2, 2)  # one new alternative
        assert completed.replaced_turn_ids == [first_turn]  # the retry still says which turn it replaced
