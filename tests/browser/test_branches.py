"""Conversations as trees in the browser: regenerating, switching alternatives, editing, continuing, deleting, the
Branches panel and SillyTavern's keys. Every reply is scripted on the stub, so each alternative is known."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

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

BORN = "I was born on the night ferry between the two moons of Vey."
THEN = "Then I learned to read the tides from the ferrymen."
REBORN = " ".join(["Truly, I was born in a lighthouse on the cliffs of Oster, where the lamp"] + ["turns"] * 40) + "."


def transcript(page: Page) -> Locator:
    return page.locator("#transcript .msg .msg-text")


def users(page: Page) -> Locator:
    return page.locator("#transcript .msg-user")


async def chat_to(page: Page, stub: StubControl, *exchanges: tuple[str, str]) -> str:
    """A guest spins and has these exchanges (what is said, the scripted reply); returns the greeting."""
    await continue_as_guest(page)
    await spin(page)
    shown_greeting = (await greeting(page).locator(".msg-text").text_content()) or ""
    for said, answer in exchanges:
        stub.script(model="orrery-chat", content=answer)
        assert await finished(await say(page, said)) == answer
    return shown_greeting


async def stored_path(page: Page) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in await stored_messages(page, await current_conversation(page))]


async def tree(page: Page) -> dict[str, Any]:
    async with await as_user(page) as http:
        response = await http.get(f"/api/conversations/{await current_conversation(page)}/tree")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_regenerated_reply_is_an_alternative_and_the_old_branch_stays(page: Page, stub: StubControl) -> None:
    hello = await chat_to(page, stub, ("Where were you born?", BORN), ("And then?", THEN))
    first = replies(page).nth(1)
    await expect(first.locator(".msg-nav")).to_have_count(0)  # one alternative: no navigator

    # Regenerated from its button, the reply streams like any other (Stop shown) in place of the old one and
    # of everything after it.
    stub.script(model="orrery-chat", content=REBORN, tokens_per_second=25)
    await first.get_by_role("button", name="Regenerate").click()
    await expect(first).to_have_attribute("data-status", "streaming", timeout=SLOW)
    await expect(page.get_by_role("button", name="Stop")).to_be_visible()
    await expect(first.locator(".msg-text")).to_contain_text("lighthouse")
    await expect(page.locator("#transcript .msg")).to_have_count(3)
    await shoot(page, "desktop-15-regenerating")
    assert await finished(first) == REBORN
    await expect(first.locator(".msg-count")).to_have_text("2/2")
    await expect(first.get_by_role("button", name="next alternative")).to_be_disabled()
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    await shoot(page, "desktop-16-regenerated")

    # "previous alternative" goes back to the first one, with the messages that followed it.
    await first.get_by_role("button", name="previous alternative").click()
    await expect(first.locator(".msg-count")).to_have_text("1/2")
    await expect(transcript(page)).to_have_text([hello, "Where were you born?", BORN, "And then?", THEN])
    await expect(first.get_by_role("button", name="previous alternative")).to_be_disabled()
    assert await stored_path(page) == [
        ("assistant", hello),
        ("user", "Where were you born?"),
        ("assistant", BORN),
        ("user", "And then?"),
        ("assistant", THEN),
    ]

    # "next alternative" shows the regenerated one again (the path through it ends there).
    await first.get_by_role("button", name="next alternative").click()
    await expect(first.locator(".msg-count")).to_have_text("2/2")
    await expect(transcript(page)).to_have_text([hello, "Where were you born?", REBORN])
    assert len((await tree(page))["nodes"]) == 6


async def test_editing_continuing_and_deleting_messages(page: Page, stub: StubControl) -> None:
    hello = await chat_to(page, stub, ("Tell me about the harbour.", "The harbour is full of glass boats."))

    # An edited message of the user's is a new alternative of it, and is answered.
    mine = users(page).first
    await mine.get_by_role("button", name="Edit").click()
    box = mine.get_by_role("textbox", name="Edited text")
    await expect(box).to_be_focused()
    await expect(box).to_have_value("Tell me about the harbour.")
    await box.fill("Tell me about the lighthouse.")
    await shoot(page, "desktop-17-editing")
    stub.script(model="orrery-chat", content="The lighthouse keeper sings to the fog.")
    await mine.get_by_role("button", name="Save").click()
    reply = replies(page).nth(1)
    assert await finished(reply) == "The lighthouse keeper sings to the fog."
    await expect(users(page).first.locator(".msg-text")).to_have_text("Tell me about the lighthouse.")
    await expect(users(page).first.locator(".msg-count")).to_have_text("2/2")
    await expect(reply.locator(".msg-nav")).to_have_count(0)

    # An edited message of the character's is stored as it is: a new alternative, nothing generated.
    asked = len(stub.chat_requests(model="orrery-chat"))
    await reply.get_by_role("button", name="Edit").click()
    box = reply.get_by_role("textbox", name="Edited text")
    await box.fill("The keeper hums.")
    await box.press("Control+Enter")
    await expect(reply.locator(".msg-count")).to_have_text("2/2")
    await expect(reply.locator(".msg-text")).to_have_text("The keeper hums.")
    assert len(stub.chat_requests(model="orrery-chat")) == asked

    # Cancel leaves the message as it was.
    await reply.get_by_role("button", name="Edit").click()
    await reply.get_by_role("textbox", name="Edited text").fill("Something else")
    await reply.get_by_role("button", name="Cancel").click()
    await expect(reply.locator(".msg-text")).to_have_text("The keeper hums.")
    await expect(reply.get_by_role("textbox")).to_have_count(0)

    # Continue writes more onto the last reply, in its own bubble.
    stub.script(model="orrery-chat", content=" Softly, and only at dawn.")
    await reply.get_by_role("button", name="Continue").click()
    await expect(reply.locator(".msg-text")).to_have_text("The keeper hums. Softly, and only at dawn.", timeout=SLOW)
    await expect(reply).to_have_attribute("data-status", "complete")
    await expect(replies(page)).to_have_count(2)
    assert (await stored_path(page))[-1] == ("assistant", "The keeper hums. Softly, and only at dawn.")
    # Only the last message can be continued; the greeting cannot be regenerated.
    await expect(greeting(page).get_by_role("button", name="Continue")).to_have_count(0)
    await expect(greeting(page).get_by_role("button", name="Regenerate")).to_have_count(0)

    # Deleted, the reply is gone: its other alternative takes its place, then (deleted too) nothing does.
    await reply.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete this message?")
    await expect(confirm).to_contain_text("Its other alternatives stay.")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(transcript(page)).to_have_text(
        [hello, "Tell me about the lighthouse.", "The lighthouse keeper sings to the fog."]
    )
    await expect(reply.locator(".msg-nav")).to_have_count(0)
    await reply.get_by_role("button", name="Delete").click()
    await page.get_by_role("dialog", name="Delete this message?").get_by_role("button", name="Delete").click()
    await expect(transcript(page)).to_have_text([hello, "Tell me about the lighthouse."])
    assert await stored_path(page) == [("assistant", hello), ("user", "Tell me about the lighthouse.")]

    # The conversation's only first message cannot be deleted: the server's reason is shown.
    await greeting(page).get_by_role("button", name="Delete").click()
    await page.get_by_role("dialog", name="Delete this message?").get_by_role("button", name="Delete").click()
    await expect(greeting(page).get_by_role("alert")).to_contain_text("delete the conversation instead")
    await expect(transcript(page)).to_have_count(2)


async def test_the_branches_panel_shows_the_tree_and_switches_the_path(page: Page, stub: StubControl) -> None:
    hello = await chat_to(page, stub, ("Where were you born?", BORN), ("And then?", THEN))
    stub.script(model="orrery-chat", content="On a comet, of course.")
    first = replies(page).nth(1)
    await first.get_by_role("button", name="Regenerate").click()
    assert await finished(first) == "On a comet, of course."
    await expect(first.locator(".msg-count")).to_have_text("2/2")

    await page.get_by_role("button", name="Branches", exact=True).click()
    panel = page.get_by_role("dialog", name="Branches")
    await expect(panel).to_be_visible()
    nodes = panel.locator(".branch-node")
    await expect(nodes).to_have_count(6)
    # The fork after the question: each alternative in a list of its own, the old one with what followed it.
    forks = panel.locator(".branch-fork > .branch-list")
    await expect(forks).to_have_count(2)
    await expect(forks.nth(0).locator(".branch-preview")).to_have_text([BORN, "And then?", THEN])
    await expect(forks.nth(1).locator(".branch-preview")).to_have_text(["On a comet, of course."])
    on_path = panel.locator(".branch-node[data-active=true]")
    await expect(on_path).to_have_count(3)  # the greeting, the question and the new reply
    await expect(on_path.nth(1)).to_contain_text("Where were you born?")
    await expect(on_path.nth(2)).to_contain_text("On a comet, of course.")
    current = panel.locator(".branch-node[aria-current=true]")
    await expect(current).to_contain_text("On a comet, of course.")
    await expect(current).to_be_focused()
    await shoot(page, "desktop-18-branches")

    await forks.nth(0).get_by_role("button", name=THEN).click()
    await expect(panel).to_be_hidden()
    await expect(transcript(page)).to_have_text([hello, "Where were you born?", BORN, "And then?", THEN])
    await expect(first.locator(".msg-count")).to_have_text("1/2")
    assert (await tree(page))["active_leaf_id"] == await replies(page).last.get_attribute("data-message-id")

    # Escape closes the panel and gives the focus back.
    await page.get_by_role("button", name="Branches", exact=True).click()
    await expect(panel.locator(".branch-node[aria-current=true]")).to_contain_text(THEN)
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(page.get_by_role("button", name="Branches", exact=True)).to_be_focused()


async def test_arrow_keys_switch_and_regenerate_the_last_reply_and_up_edits(page: Page, stub: StubControl) -> None:
    await chat_to(page, stub, ("Sing me something.", "La la la, said the moon."))
    composer = page.get_by_role("textbox", name="Message")
    last = replies(page).last
    await expect(last.get_by_role("button", name="Edit")).to_be_visible()

    # → on the only (so the last) alternative regenerates, as in SillyTavern.
    stub.script(model="orrery-chat", content="Hum hum hum, said the sun.")
    await composer.press("ArrowRight")
    await expect(last.locator(".msg-count")).to_have_text("2/2", timeout=SLOW)
    await expect(last.locator(".msg-text")).to_have_text("Hum hum hum, said the sun.")
    await expect(composer).to_be_focused()

    await composer.press("ArrowLeft")
    await expect(last.locator(".msg-count")).to_have_text("1/2")
    await expect(last.locator(".msg-text")).to_have_text("La la la, said the moon.")
    await composer.press("ArrowRight")
    await expect(last.locator(".msg-count")).to_have_text("2/2")
    await expect(last.locator(".msg-text")).to_have_text("Hum hum hum, said the sun.")

    # From the transcript too: the focus stays on the same control of the redrawn reply.
    await last.get_by_role("button", name="Edit").focus()
    await page.keyboard.press("ArrowLeft")
    await expect(last.locator(".msg-count")).to_have_text("1/2")
    await expect(last.get_by_role("button", name="Edit")).to_be_focused()

    # Not while something is typed: the arrows move the caret.
    await composer.fill("draft")
    await composer.press("ArrowRight")
    await asyncio.sleep(0.5)
    await expect(last.locator(".msg-count")).to_have_text("1/2")
    await composer.fill("")

    # ↑ edits the last message of the user's; Escape leaves it as it was.
    await composer.press("ArrowUp")
    box = users(page).last.get_by_role("textbox", name="Edited text")
    await expect(box).to_be_focused()
    await expect(box).to_have_value("Sing me something.")
    await page.keyboard.press("Escape")
    await expect(box).to_have_count(0)
    await expect(users(page).last.locator(".msg-text")).to_have_text("Sing me something.")

    await composer.focus()
    await composer.press("ArrowUp")
    await box.fill("Sing me something sad.")
    stub.script(model="orrery-chat", content="The moon wept silver.")
    await box.press("Control+Enter")
    assert await finished(replies(page).last) == "The moon wept silver."
    await expect(users(page).last.locator(".msg-count")).to_have_text("2/2")


async def test_a_continuation_cut_off_by_the_network_completes_exactly_once(page: Page, stub: StubControl) -> None:
    await chat_to(page, stub, ("Count the waves.", "One."))
    more = "".join(f" wave{i}" for i in range(60))
    stub.script(model="orrery-chat", content=more, tokens_per_second=20)
    reply = replies(page).last
    await reply.get_by_role("button", name="Continue").click()
    await expect(reply.locator(".msg-text")).to_contain_text("wave6", timeout=SLOW)
    await expect(page.get_by_role("button", name="Stop")).to_be_visible()

    await page.context.set_offline(True)
    await expect(page.locator("#link-status")).to_have_attribute("data-state", "offline")
    await asyncio.sleep(1)
    await page.context.set_offline(False)
    assert await finished(reply) == "One." + more
    await expect(replies(page)).to_have_count(2)
    assert (await stored_path(page))[-1] == ("assistant", "One." + more)
