"""A guest at the roulette: spinning, meeting the character, chatting while the reply streams, and coming back."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.client import (
    SLOW,
    as_user,
    continue_as_guest,
    current_conversation,
    finished,
    greeting,
    replies,
    say,
    shoot,
    spin,
    stored_messages,
)
from tests.support.llm_stub import StubControl

pytestmark = pytest.mark.e2e

FIRST_REPLY = "The rings of Kestrel hum when the tide comes in, and I have listened to them since I was small."
SECOND_REPLY = "Of course I remember you: you asked about the rings."


async def test_a_guest_spins_chats_spins_again_and_continues_the_first_conversation(
    page: Page, stub: StubControl
) -> None:
    # A slow persona keeps the loading screen up long enough to be seen.
    stub.script(model="orrery-persona", ttft_ms=1500)
    await page.goto("/")
    await expect(page.get_by_role("heading", name="ORRERY")).to_be_visible()
    await shoot(page, "desktop-01-sign-in")
    await page.get_by_role("button", name="Continue as guest").click()
    await expect(page.get_by_role("heading", name="Who is out there?")).to_be_visible()
    await expect(page.locator("#link-status")).to_have_attribute("data-state", "open")
    await shoot(page, "desktop-02-roulette")

    await page.get_by_role("button", name="Spin the roulette").click()
    await expect(page.locator("#screen-loading")).to_be_visible()
    await expect(page.locator("#spin-steps [data-step=generating]")).to_have_attribute("data-state", "active")
    await shoot(page, "desktop-03-generating")
    await expect(page.locator("#screen-chat")).to_be_visible(timeout=SLOW)

    async with await as_user(page) as http:
        [character] = (await http.get("/api/characters", params={"presets": "false"})).json()["items"]
    await expect(page.get_by_role("heading", name=character["name"])).to_be_visible()
    await expect(page.locator("#character-planet")).to_contain_text(character["planet"])
    await expect(page.locator("#character-traits")).to_contain_text(character["species"])
    await expect(greeting(page).locator(".msg-text")).to_have_text(character["greeting"])
    portrait_loaded = await page.locator("#portrait").evaluate("img => img.complete && img.naturalWidth > 0")
    assert portrait_loaded, "the portrait did not load"
    await shoot(page, "desktop-04-greeting")

    # The reply arrives piece by piece in the polite live region.
    stub.script(model="orrery-chat", content=FIRST_REPLY, tokens_per_second=12)
    reply = await say(page, "What do the rings sound like?")
    await expect(page.locator("#transcript")).to_have_attribute("aria-live", "polite")
    await expect(reply).to_have_attribute("data-status", "streaming", timeout=SLOW)
    await expect(reply.locator(".msg-text")).to_contain_text("Kestrel")
    partial = await reply.locator(".msg-text").text_content()
    assert partial and partial != FIRST_REPLY and FIRST_REPLY.startswith(partial)
    await expect(page.get_by_role("button", name="Stop")).to_be_visible()
    await shoot(page, "desktop-05-streaming")
    assert await finished(reply) == FIRST_REPLY
    first_conversation = await current_conversation(page)
    await shoot(page, "desktop-06-reply")

    # Spin again: another character; the first conversation waits in the sidebar.
    second_name = await spin(page, "✦ Spin again")
    assert second_name != character["name"]
    listed = page.locator(f".conv[data-conversation-id='{first_conversation}']")
    await expect(listed).to_contain_text("What do the rings sound like?")
    await expect(listed).to_contain_text(character["name"])
    await shoot(page, "desktop-07-spun-again")

    await listed.locator(".conv-open").click()
    await expect(page.get_by_role("heading", name=character["name"])).to_be_visible()
    await expect(page.locator("#screen-chat")).to_have_attribute("data-conversation-id", first_conversation)
    await expect(replies(page)).to_have_count(2)
    await expect(replies(page).last.locator(".msg-text")).to_have_text(FIRST_REPLY)
    stub.script(model="orrery-chat", content=SECOND_REPLY)
    assert await finished(await say(page, "Do you remember me?")) == SECOND_REPLY
    await shoot(page, "desktop-08-continued")

    stored = await stored_messages(page, first_conversation)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("assistant", character["greeting"]),
        ("user", "What do the rings sound like?"),
        ("assistant", FIRST_REPLY),
        ("user", "Do you remember me?"),
        ("assistant", SECOND_REPLY),
    ]


async def test_stop_ends_the_reply_and_keeps_what_was_written(page: Page, stub: StubControl) -> None:
    await continue_as_guest(page)
    await spin(page)
    stub.script(model="orrery-chat", content=" ".join(f"wave{i}" for i in range(400)), tokens_per_second=20)
    reply = await say(page, "Tell me everything.")
    await expect(reply.locator(".msg-text")).to_contain_text("wave5", timeout=SLOW)
    await page.get_by_role("button", name="Stop").click()
    shown = await finished(reply, "cancelled")
    await expect(reply).to_contain_text("stopped")
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    stored = (await stored_messages(page, await current_conversation(page)))[-1]
    assert stored["status"] == "cancelled" and stored["content"] == shown
    assert "wave399" not in shown


async def test_a_failed_spin_says_why_and_another_spin_works(page: Page, stub: StubControl) -> None:
    stub.script(model="orrery-persona", status=400, error_message="the persona model refused")
    await continue_as_guest(page)
    await page.get_by_role("button", name="Spin the roulette").click()
    failure = page.locator("#spin-failure")
    await expect(failure).to_be_visible(timeout=SLOW)
    await expect(failure).to_contain_text("The roulette jammed")
    await shoot(page, "desktop-09-spin-failed")
    await page.get_by_role("button", name="Try another spin").click()
    await expect(page.locator("#screen-chat")).to_be_visible(timeout=SLOW)
    await expect(greeting(page)).to_be_visible()


async def test_a_rate_limited_message_says_when_to_try_again_and_keeps_the_text(page: Page, stub: StubControl) -> None:
    # The gateway's limit is shared by every test: its answer is played here instead of reaching it.
    async def refuse_messages(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame["type"] == "message":
                ws.send(
                    json.dumps(
                        {
                            "type": "error",
                            "code": "rate_limited",
                            "message": "too many messages; try again in 42s",
                            "retry_after": 42,
                        }
                    )
                )
            else:
                server.send(message)

        ws.on_message(from_page)

    await page.route_web_socket("**/ws", refuse_messages)
    await continue_as_guest(page)
    await spin(page)
    await say(page, "Hello there!")
    refused = page.locator("#transcript .msg-user").last
    await expect(refused).to_have_attribute("data-status", "failed")
    await expect(refused).to_contain_text("Not sent")
    await expect(refused).to_contain_text("try again in 42 s")
    await expect(page.get_by_role("textbox", name="Message")).to_have_value("Hello there!")
    await expect(page.locator("#send")).to_be_disabled()
    await expect(page.locator("#send")).to_contain_text("Wait")
    await shoot(page, "desktop-10-rate-limited")


async def test_ending_a_session_shows_its_summary_and_deleting_removes_it(page: Page, stub: StubControl) -> None:
    await continue_as_guest(page)
    name = await spin(page)
    await finished(await say(page, "Let us talk about the comet."))
    conversation_id = await current_conversation(page)
    await page.get_by_role("button", name="End session").click()
    dialog = page.get_by_role("dialog", name="Session ended")
    await expect(dialog).to_be_visible(timeout=SLOW)
    async with await as_user(page) as http:
        summary = (await http.get(f"/api/conversations/{conversation_id}")).json()["summary"]
    assert summary
    await expect(dialog.locator("#summary-text")).to_have_text(summary)
    await shoot(page, "desktop-11-summary")
    await dialog.get_by_role("button", name="Close").click()
    listed = page.locator(f".conv[data-conversation-id='{conversation_id}']")
    await expect(listed).to_contain_text("ended")

    await listed.get_by_role("button", name=f"Delete “Let us talk about the comet.” with {name}").click()
    confirm = page.get_by_role("dialog", name="Delete this conversation?")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(listed).to_have_count(0)
    await expect(page.get_by_role("heading", name="Who is out there?")).to_be_visible()
    async with await as_user(page) as http:
        assert (await http.get(f"/api/conversations/{conversation_id}")).status_code == 404
