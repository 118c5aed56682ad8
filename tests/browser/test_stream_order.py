"""How the page assembles a reply from its frames, with the socket played by the test frame by frame.

The gateway never reorders or repeats frames on one socket, and restarts only happen when chat dies mid-reply,
so these cases are staged: early frames wait for the missing ones, repeated ones are ignored, and a restart
discards the text received so far.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.client import continue_as_guest, finished, say, spin

pytestmark = pytest.mark.e2e

CHARACTER: dict[str, Any] = {
    "id": "5d0f6f7e-6a55-4c53-9d0e-2b5a1c7d9e01",
    "name": "Quill Marrowby",
    "planet": "Tessellate",
    "sex": "agender",
    "species": "crystalline",
    "archetype": "smuggler",
    "personality": "Wry and careful.",
    "backstory": "Runs glass through the blockade.",
    "greeting": "Quietly now. What do you carry?",
    "tags": [],
    "portrait_url": None,
}
TURN = "0b8f3c1e-2d4a-4f6b-8c9d-7e1a2b3c4d5e"


class PlayedGateway:
    """Answers the page's frames as the gateway would, sending each reply's frames in a scripted order."""

    def __init__(self, reply_frames: list[dict[str, Any]]) -> None:
        self.reply_frames = reply_frames

    async def route(self, ws: WebSocketRoute) -> None:
        def send(frame: dict[str, Any]) -> None:
            ws.send(json.dumps(frame))

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame["type"] == "ping":
                send({"type": "pong"})
            elif frame["type"] == "spin":
                send({"type": "character.generating", "request_id": "r-1"})
                send({"type": "character.ready", "request_id": "r-1", "character": CHARACTER})
            elif frame["type"] == "start_conversation":
                send(
                    {
                        "type": "conversation.started",
                        "conversation_id": "c0ffee00-0000-4000-8000-000000000001",
                        "project_id": "c0ffee00-0000-4000-8000-000000000002",
                        "character": CHARACTER,
                        "greeting": CHARACTER["greeting"],
                    }
                )
            elif frame["type"] == "message":
                send({"type": "turn.accepted", "turn_id": TURN, "client_msg_id": frame["client_msg_id"]})
                for reply_frame in self.reply_frames:
                    send({"turn_id": TURN, **reply_frame})

        ws.on_message(from_page)


def delta(seq: int, text: str) -> dict[str, Any]:
    return {"type": "delta", "seq": seq, "text": text}


def done(seq: int) -> dict[str, Any]:
    return {"type": "turn.done", "seq": seq, "message_id": "m-1", "status": "complete"}


async def chat_through(page: Page, reply_frames: list[dict[str, Any]]) -> str:
    await page.route_web_socket("**/ws", PlayedGateway(reply_frames).route)
    await continue_as_guest(page)
    assert await spin(page) == CHARACTER["name"]
    return await finished(await say(page, "Nothing but salt."))


async def test_frames_arriving_early_wait_for_the_missing_ones_and_repeats_are_ignored(page: Page) -> None:
    frames = [
        delta(1, "Salt "),
        delta(3, "worth "),
        delta(2, "is "),
        delta(2, "is "),
        delta(1, "Salt "),
        delta(4, "smuggling."),
        done(5),
    ]
    assert await chat_through(page, frames) == "Salt is worth smuggling."


async def test_a_restart_discards_the_partial_reply(page: Page) -> None:
    frames = [
        delta(1, "Salt is "),
        delta(2, "worth noth"),
        {"type": "turn.restart", "seq": 3},
        delta(4, "Then we "),
        delta(5, "trade in silence."),
        done(6),
    ]
    assert await chat_through(page, frames) == "Then we trade in silence."
    await expect(page.locator("#transcript .msg-assistant").last).not_to_contain_text("worth noth")


async def test_a_failed_turn_says_why_and_offers_to_send_again(page: Page) -> None:
    frames = [
        delta(1, "Salt is "),
        {"type": "turn.failed", "seq": 2, "reason": "the character could not answer right now", "retryable": True},
    ]
    await page.route_web_socket("**/ws", PlayedGateway(frames).route)
    await continue_as_guest(page)
    await spin(page)
    reply = await say(page, "Nothing but salt.")
    await expect(reply).to_have_attribute("data-status", "failed")
    await expect(reply.get_by_role("alert")).to_have_text("The character could not answer right now.")
    await expect(reply.get_by_role("button", name="Send again")).to_be_visible()
    await expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
