"""A reply cut off by the network completes after the page reconnects: no gap, no repetition."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.client import (
    SLOW,
    continue_as_guest,
    current_conversation,
    finished,
    say,
    shoot,
    spin,
    stored_messages,
)
from tests.support.llm_stub import StubControl

pytestmark = pytest.mark.e2e

REPLY = " ".join(f"star{i}" for i in range(90))


class Sockets:
    """Every socket the page opens passes through here, so the test sees what the page sent on each."""

    def __init__(self) -> None:
        self.sent: list[list[dict[str, Any]]] = []
        self.routes: list[WebSocketRoute] = []

    async def route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        frames: list[dict[str, Any]] = []
        self.sent.append(frames)
        self.routes.append(ws)

        def from_page(message: str | bytes) -> None:
            frames.append(json.loads(message))
            server.send(message)

        ws.on_message(from_page)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frames in self.sent for frame in frames if frame["type"] == kind]


@pytest.mark.parametrize(
    ("outage_s", "case"),
    [(1.0, "back-mid-reply"), (7.0, "back-after-the-reply-ended")],
)
async def test_a_reply_cut_off_by_the_network_completes_exactly_once(
    page: Page, stub: StubControl, outage_s: float, case: str
) -> None:
    sockets = Sockets()
    await page.route_web_socket("**/ws", sockets.route)
    await continue_as_guest(page)
    await spin(page)
    stub.script(model="orrery-chat", content=REPLY, tokens_per_second=20)
    reply = await say(page, "Count the stars for me.")
    await expect(reply.locator(".msg-text")).to_contain_text("star8", timeout=SLOW)

    await page.context.set_offline(True)
    await expect(page.locator("#link-status")).to_have_attribute("data-state", "offline")
    seen_before = (await reply.locator(".msg-text").text_content()) or ""
    assert seen_before and seen_before != REPLY
    await expect(page.locator("#chat-banner")).to_contain_text("picks up where it stopped")
    await shoot(page, f"desktop-13-offline-{case}")
    await asyncio.sleep(outage_s)
    await page.context.set_offline(False)

    shown = await finished(reply)
    await expect(page.locator("#link-status")).to_have_attribute("data-state", "open")
    assert shown == REPLY
    [resume] = sockets.of_type("resume")
    [message] = [frame for frame in sockets.sent[0] if frame["type"] == "message"]
    assert len(sockets.sent) == 2 and resume in sockets.sent[1]
    assert resume["turn_id"] == await reply.get_attribute("data-turn-id")
    assert resume["after_seq"] > 0
    assert message["content"] == "Count the stars for me."

    stored = (await stored_messages(page, await current_conversation(page)))[-1]
    assert stored["content"] == shown
    assert stored["message_id"] == await reply.get_attribute("data-message-id")
    await expect(page.locator("#transcript .msg-assistant")).to_have_count(2)  # the greeting and this reply
    await shoot(page, f"desktop-14-resumed-{case}")


async def test_a_socket_the_server_closes_mid_reply_is_reopened_and_the_reply_completes_exactly_once(
    page: Page, stub: StubControl
) -> None:
    sockets = Sockets()
    await page.route_web_socket("**/ws", sockets.route)
    await continue_as_guest(page)
    await spin(page)
    stub.script(model="orrery-chat", content=REPLY, tokens_per_second=20)
    reply = await say(page, "Count them again.")
    await expect(reply.locator(".msg-text")).to_contain_text("star5", timeout=SLOW)

    # As a gateway going away does (the browser stays online: the page retries after a short backoff).
    await sockets.routes[0].close(code=1001, reason="server shutting down")
    shown = await finished(reply)
    assert shown == REPLY
    [resume] = sockets.of_type("resume")
    assert len(sockets.sent) == 2 and resume in sockets.sent[1] and resume["after_seq"] > 0
    stored = (await stored_messages(page, await current_conversation(page)))[-1]
    assert stored["content"] == shown
