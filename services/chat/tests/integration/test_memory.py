"""Memory: once the recent window is full, older messages live on in a rolling summary, not in the prompt."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from orrery_chat.domain import MESSAGE_OVERHEAD
from orrery_chat.settings import ChatSettings
from orrery_shared.llm.tokens import estimate_tokens
from services.chat.tests.integration.harness import Client
from tests.support.llm_stub import StubControl

pytestmark = pytest.mark.integration

FACT = "My name is Ada and my ship is the Kestrel."


async def test_at_turn_sixty_the_prompt_holds_the_summary_and_only_the_recent_window(
    chat: tuple[FastAPI, httpx.AsyncClient], client: Client, llm_stub: StubControl
) -> None:
    budget = ChatSettings().memory_window_tokens
    persona = await client.introduce()
    conversation = uuid4()
    for number in range(1, 61):
        content = FACT if number == 1 else f"Tell me about the beacon number {number} on the old star lane."
        turn = await client.send(conversation, persona.character_id, content)
        entries = await client.until_final(turn.turn_id)
        assert entries[-1]["type"] == "done"

    chats = [r["body"]["messages"] for r in llm_stub.chat_requests(model="orrery-chat")]
    last = next(m for m in chats if "number 60 " in m[-1]["content"])
    system, window = last[0]["content"], last[1:]
    assert f"The user said: {FACT}" in system  # the fact from turn 1 reached the summary...
    assert FACT not in [m["content"] for m in window]  # ...and left the window
    assert sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD for m in window) <= budget
    assert len(window) < 2 * 60

    summaries = llm_stub.chat_requests(model="orrery-summary")
    assert 0 < len(summaries) < 30  # folded every few turns, not every turn
    assert FACT in summaries[0]["body"]["messages"][-1]["content"]


async def test_prompt_size_stops_growing_once_the_budget_is_reached(
    chat: tuple[FastAPI, httpx.AsyncClient], client: Client, llm_stub: StubControl
) -> None:
    budget = ChatSettings().memory_window_tokens
    persona = await client.introduce()
    conversation = uuid4()
    for number in range(1, 41):
        turn = await client.send(conversation, persona.character_id, f"Here is story fragment {number} of the saga.")
        await client.until_final(turn.turn_id)
    windows = [
        sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD for m in r["body"]["messages"][1:])
        for r in llm_stub.chat_requests(model="orrery-chat")
    ]
    assert len(windows) == 40
    assert max(windows) <= budget
    early, late = sum(windows[:5]) / 5, sum(windows[-10:]) / 10
    assert early < late / 3  # it grew while the budget was not yet reached...
    assert max(windows[-10:]) - min(windows[-10:]) < budget * 0.6  # ...then it plateaued below the budget
