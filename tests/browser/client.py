"""What the browser tests do with the web client, in the words a user would use, plus what they check with."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from playwright.async_api import Locator, Page, expect

from tests.support.infra import ROOT
from tests.support.platform import GATEWAY

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
MAILBOX = "http://127.0.0.1:8025"
SLOW = 45_000  # ms: a spin or a reply on a busy machine
# The dossier service also picks up projects left waiting by earlier runs (the database outlives the platform),
# and their extractions take scripted replies too: script many uses so this test's own still gets one.
EXTRACTION_USES = 50


async def shoot(page: Page, name: str) -> None:
    """Keep a picture of the screen as a test artifact (artifacts/screenshots/<name>.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png")


async def assert_fits(page: Page) -> None:
    """Nothing is wider than the window (no sideways scrolling)."""
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]}px wide in a {widths[1]}px window"


async def continue_as_guest(page: Page) -> None:
    await page.goto("/")
    await page.get_by_role("button", name="Continue as guest").click()
    await expect(page.get_by_role("heading", name="Who is out there?")).to_be_visible()


async def spin(page: Page, button: str = "Spin the roulette") -> str:
    """Spin and wait for the chat with the new character; returns the character's name."""
    before = await page.locator("#screen-chat").get_attribute("data-conversation-id")
    await page.get_by_role("button", name=button).click()
    chat = page.locator("#screen-chat")
    await expect(chat).to_be_visible(timeout=SLOW)
    if before:
        await expect(chat).not_to_have_attribute("data-conversation-id", before)
    await expect(greeting(page)).to_be_visible()
    return (await page.locator("#character-name").text_content()) or ""


def greeting(page: Page) -> Locator:
    return page.locator(".msg-assistant[data-greeting]")


def replies(page: Page) -> Locator:
    return page.locator("#transcript .msg-assistant")


async def say(page: Page, text: str) -> Locator:
    """Type a message and press Enter; returns the bubble of the reply being written."""
    count = await replies(page).count()
    composer = page.get_by_role("textbox", name="Message")
    await composer.fill(text)
    await composer.press("Enter")
    return replies(page).nth(count)


async def finished(reply: Locator, status: str = "complete") -> str:
    """Wait for the reply to be finished; returns its text as shown."""
    await expect(reply).to_have_attribute("data-status", status, timeout=SLOW)
    return (await reply.locator(".msg-text").text_content()) or ""


async def session(page: Page) -> dict[str, Any]:
    """The session the page keeps (the token response in localStorage)."""
    raw = await page.evaluate("localStorage.getItem('orrery.session')")
    assert raw, "the page holds no session"
    stored: dict[str, Any] = json.loads(raw)
    return stored


async def as_user(page: Page) -> httpx.AsyncClient:
    """An API client acting as the page's user."""
    token = (await session(page))["access_token"]
    return httpx.AsyncClient(base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def current_conversation(page: Page) -> str:
    conversation_id = await page.locator("#screen-chat").get_attribute("data-conversation-id")
    assert conversation_id
    return conversation_id


async def stored_messages(page: Page, conversation_id: str) -> list[dict[str, Any]]:
    async with await as_user(page) as http:
        response = await http.get(f"/api/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"][::-1]  # the active path, oldest first
    return messages


async def sign_in_link(email: str, timeout: float = 30) -> str:
    """The sign-in link mailed to `email`, read from the dev mailbox's JSON API."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=MAILBOX, timeout=5) as http:
        while True:
            mails = (await http.get("/api/messages")).json()["messages"]
            for mail in mails:  # newest first
                if email in mail["to"]:
                    links = [link for link in mail["links"] if "/auth/verify?token=" in link]
                    assert links, mail
                    link: str = links[0]
                    return link
            assert time.monotonic() < deadline, f"no mail to {email} arrived"
            await asyncio.sleep(0.3)
