"""At phone width (390 px) every screen fits without sideways scrolling and stays usable by keyboard."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
from playwright.async_api import Page, expect

from tests.browser.client import EXTRACTION_USES, SLOW, assert_fits, finished, say, shoot, spin
from tests.support.llm_stub import StubControl

pytestmark = pytest.mark.e2e

LONG_WORD = "Ooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooh"


async def test_every_screen_fits_a_phone(phone: Page, stub: StubControl) -> None:
    page = phone
    await page.goto("/")
    await expect(page.get_by_role("heading", name="ORRERY")).to_be_visible()
    await assert_fits(page)
    await shoot(page, "phone-01-sign-in")

    await page.get_by_label("Username").fill("Pocket Pilot")
    # An address of its own each run: five links per address per 15 minutes, and the tests' Redis outlives a run.
    await page.get_by_label("Email").fill(f"pocket-pilot-{uuid4().hex[:8]}@example.org")
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    await assert_fits(page)
    await shoot(page, "phone-02-check-your-mail")
    await page.get_by_role("button", name="Use another address").click()

    await page.get_by_role("button", name="Continue as guest").click()
    await expect(page.get_by_role("heading", name="Who is out there?")).to_be_visible()
    await assert_fits(page)
    await shoot(page, "phone-03-roulette")

    stub.script(model="orrery-persona", ttft_ms=1500)
    await page.get_by_role("button", name="Spin the roulette").click()
    await expect(page.locator("#spin-steps [data-step=generating]")).to_have_attribute("data-state", "active")
    await assert_fits(page)
    await shoot(page, "phone-04-generating")
    await expect(page.locator("#screen-chat")).to_be_visible(timeout=SLOW)
    await assert_fits(page)
    await shoot(page, "phone-05-chat")

    stub.script(model="orrery-chat", content=f"{LONG_WORD}! That is the sound of the rings, stranger.")
    stub.script(
        model="orrery-extraction",
        content=json.dumps({"title": "Rings", "themes": ["sound"], "locations": ["the ring docks of Kestrel"]}),
        times=EXTRACTION_USES,
    )
    reply = await say(page, f"Captain Rell sails into the ring docks of Kestrel and shouts {LONG_WORD}")
    await finished(reply)
    await assert_fits(page)
    await shoot(page, "phone-06-reply")

    await page.get_by_role("button", name="Conversations").click()
    sidebar = page.get_by_role("complementary", name="Conversations")
    await expect(sidebar).to_be_visible()
    await expect(sidebar.locator(".conv")).to_have_count(1, timeout=SLOW)
    await assert_fits(page)
    await shoot(page, "phone-07-conversations")
    await page.keyboard.press("Escape")
    await expect(sidebar).to_be_hidden()

    await page.get_by_role("button", name="Dossier").click()
    dossier = page.get_by_role("complementary", name="Dossier")
    await expect(dossier).to_be_visible()
    await expect(dossier).to_contain_text("the ring docks of Kestrel", timeout=SLOW)
    await assert_fits(page)
    await shoot(page, "phone-08-dossier")
    await dossier.get_by_role("button", name="Edit").click()
    await assert_fits(page)
    await shoot(page, "phone-09-dossier-edit")
    await page.keyboard.press("Escape")
    await expect(dossier).to_be_hidden()
    await expect(page.get_by_role("button", name="Dossier")).to_be_focused()

    await spin(page, "✦ Spin again")
    await assert_fits(page)


async def test_the_chat_works_from_the_keyboard_alone(page: Page, stub: StubControl) -> None:
    await page.goto("/")
    await expect(page.get_by_role("heading", name="ORRERY")).to_be_visible()
    guest = page.get_by_role("button", name="Continue as guest")
    for _ in range(12):  # Tab through the sign-in form to the guest button
        await page.keyboard.press("Tab")
        if await guest.evaluate("el => el === document.activeElement"):
            break
    await expect(guest).to_be_focused()
    await page.keyboard.press("Enter")
    spin_button = page.get_by_role("button", name="Spin the roulette")
    await expect(spin_button).to_be_visible()
    await spin_button.focus()
    await page.keyboard.press("Enter")
    composer = page.get_by_role("textbox", name="Message")
    await expect(composer).to_be_focused(timeout=SLOW)
    await page.keyboard.type("Hello from the keys.")
    await page.keyboard.press("Enter")
    reply = page.locator("#transcript .msg-assistant").nth(1)
    await finished(reply)
    outline = await page.evaluate(
        """() => { const b = document.getElementById('spin-again'); b.focus();
                   return getComputedStyle(b).outlineStyle; }"""
    )
    assert outline != "none", "focused controls show where the focus is"
