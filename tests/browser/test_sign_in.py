"""Signing in with a magic link through the real mail sink, from the form and as a guest keeping its chats."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Request, expect

from tests.browser.client import SLOW, continue_as_guest, finished, say, session, shoot, sign_in_link, spin
from tests.support.llm_stub import StubControl
from tests.support.platform import GATEWAY

pytestmark = pytest.mark.e2e


def new_address() -> str:
    return f"pilot-{uuid4().hex[:10]}@example.org"


async def test_a_sign_in_link_from_the_form_arrives_by_mail_and_signs_in(page: Page, platform: str) -> None:
    email = new_address()
    await page.goto("/")
    await page.get_by_label("Username").fill("Nova Pilot")
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Send me a sign-in link").click()

    await expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    await expect(page.locator("#mail-address")).to_have_text(email)
    mailbox = page.get_by_role("link", name="development mailbox")
    await expect(mailbox).to_have_attribute("href", "http://127.0.0.1:8025/")
    await shoot(page, "desktop-12-check-your-mail")

    await page.goto(await sign_in_link(email))
    await expect(page).to_have_url(f"{GATEWAY}/", timeout=SLOW)
    await expect(page.get_by_role("heading", name="Who is out there?")).to_be_visible()
    await expect(page.locator("#who")).to_have_text("Nova Pilot")
    await expect(page.get_by_role("button", name="Keep my chats: sign in")).to_be_hidden()
    user = (await session(page))["user"]
    assert user["email"] == email and not user["is_guest"]


async def test_the_form_explains_what_is_missing_before_asking_for_a_link(page: Page, platform: str) -> None:
    await page.goto("/")
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await expect(page.locator("#signin-username-error")).to_contain_text("Choose a username")
    await expect(page.get_by_label("Username")).to_be_focused()
    await page.get_by_label("Username").fill("Nova")
    await page.get_by_label("Email").fill("not-an-address")
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await expect(page.locator("#signin-email-error")).to_contain_text("Enter the address")
    await expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")


async def test_a_guest_who_signs_in_by_email_keeps_the_conversations(page: Page, stub: StubControl) -> None:
    await continue_as_guest(page)
    name = await spin(page)
    await finished(await say(page, "Remember the comet over Vey."))
    guest = (await session(page))["user"]
    assert guest["is_guest"]

    email = new_address()
    await page.get_by_role("button", name="Keep my chats: sign in").click()
    await expect(page.get_by_role("heading", name="Keep your conversations")).to_be_visible()
    await expect(page.get_by_role("button", name="Continue as guest")).to_be_hidden()
    await page.get_by_label("Username").fill("Comet Keeper")
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()

    await page.goto(await sign_in_link(email))
    await expect(page).to_have_url(f"{GATEWAY}/", timeout=SLOW)
    await expect(page.locator("#who")).to_have_text("Comet Keeper")
    account = (await session(page))["user"]
    assert not account["is_guest"] and account["id"] != guest["id"]
    # The guest's conversation moves to the account in the background and then shows up.
    listed = page.locator(".conv", has_text="Remember the comet over Vey.")
    await expect(listed).to_be_visible(timeout=SLOW)
    await expect(listed).to_contain_text(name)
    await listed.locator(".conv-open").click()
    await expect(page.locator("#transcript .msg-user .msg-text")).to_have_text(["Remember the comet over Vey."])


async def test_a_guest_opening_a_link_someone_else_asked_for_is_asked_first_and_keeps_its_chats(
    page: Page, stub: StubControl
) -> None:
    """Login CSRF: an attacker asks for a link to the attacker's own address and gets a guest to open it."""
    attacker = new_address()
    async with httpx.AsyncClient(base_url=GATEWAY) as client:
        asked = await client.post("/api/auth/magic-link", json={"email": attacker, "username": "Mallory"})
        assert asked.status_code == 202
    await continue_as_guest(page)
    await spin(page)
    await finished(await say(page, "A secret about the comet."))
    guest_session = await session(page)
    guest = guest_session["user"]

    link = await sign_in_link(attacker)
    await page.goto(link)
    await expect(page.locator("#status")).to_contain_text("not asked for from this browser")
    await expect(page.locator("#status")).to_contain_text(guest["username"])
    await page.get_by_role("button", name="Stay the guest").click()
    await expect(page).to_have_url(f"{GATEWAY}/", timeout=SLOW)
    assert (await session(page))["user"]["id"] == guest["id"]

    # Even when the user goes ahead, the guest stays its own: the link was not asked for by it.
    await page.goto(link)  # staying spent nothing: the same link still works
    await page.get_by_role("button", name="Sign in with this link").click()
    await expect(page).to_have_url(f"{GATEWAY}/", timeout=SLOW)
    assert (await session(page))["user"]["email"] == attacker
    async with httpx.AsyncClient(base_url=GATEWAY) as client:
        me = await client.get("/api/me", headers={"Authorization": f"Bearer {guest_session['access_token']}"})
        assert me.status_code == 200, me.text
        assert me.json()["is_guest"] is True


async def test_two_tabs_renew_the_session_once_before_it_expires_and_stay_signed_in(
    context: BrowserContext, stub: StubControl
) -> None:
    # The page's clock is a fake one, so fourteen minutes pass in an instant (the servers keep real time).
    await context.clock.install()
    first = await context.new_page()
    await continue_as_guest(first)
    second = await context.new_page()
    await second.goto("/")
    await expect(second.get_by_role("heading", name="Who is out there?")).to_be_visible()
    await expect(second.locator("#link-status")).to_have_attribute("data-state", "open")
    before = await session(first)
    refreshes: list[Request] = []
    context.on("request", lambda r: refreshes.append(r) if r.url.endswith("/api/auth/refresh") else None)

    await context.clock.fast_forward("14:00")
    deadline = time.monotonic() + 15
    while (await session(first))["access_token"] == before["access_token"]:
        assert time.monotonic() < deadline, "the session was not renewed"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)  # time for a second, concurrent renewal to show itself

    # Both tabs were due: one renewed, the other adopted its tokens (a refresh token spent twice revokes them).
    assert len(refreshes) == 1
    assert (await session(first)) == (await session(second))
    assert (await session(second))["user"]["id"] == before["user"]["id"]
    for page in (first, second):
        await expect(page.locator("#link-status")).to_have_attribute("data-state", "open")
    await spin(second)
    assert (await finished(await say(second, "Still here?"))).strip()
