"""The web client in a real browser: Debian's Chromium driven by Playwright, against the whole platform.

The platform is started as tests/e2e starts it (fixed ports, the LLM stub on 18080, the dev mailbox on 8025),
once for this folder. Every test gets a fresh browser context — its own storage, so its own session — in which
any request leaving the machine is refused and recorded: the client must work with nothing but the gateway.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, ViewportSize, async_playwright

from tests.support.platform import GATEWAY, PLATFORM_ENV, running

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium, never a browser downloaded by Playwright; nothing in the background phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP: ViewportSize = {"width": 1366, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.fixture(scope="package")
def platform(platform_kafka: str) -> Iterator[str]:
    env = {
        **PLATFORM_ENV,
        # Extract the dossier after every turn worth it, instead of waiting for a batch.
        "ORRERY_DOSSIER_MAX_PENDING_TURNS": "1",
        "ORRERY_AUTH_MAGIC_LINKS_PER_IP": "1000",
    }
    with running([sys.executable, "scripts/run_platform.py"], platform_kafka, env):
        yield GATEWAY


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap.sh installs Debian's chromium package")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Outside:
    """Requests the page tried to make to anywhere but this machine (all refused)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def refuse(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            self.urls.append(route.request.url)
            await route.abort()


async def new_context(browser: Browser, viewport: ViewportSize, outside: Outside) -> BrowserContext:
    context = await browser.new_context(base_url=GATEWAY, viewport=viewport)
    await context.route("**/*", outside.refuse)
    return context


@pytest.fixture
async def outside() -> Outside:
    return Outside()


@pytest.fixture
async def context(browser: Browser, platform: str, outside: Outside) -> AsyncIterator[BrowserContext]:
    context = await new_context(browser, DESKTOP, outside)
    yield context
    await context.close()
    assert not outside.urls, f"the page reached outside the machine: {outside.urls}"


@pytest.fixture
async def phone_context(browser: Browser, platform: str, outside: Outside) -> AsyncIterator[BrowserContext]:
    context = await new_context(browser, PHONE, outside)
    yield context
    await context.close()
    assert not outside.urls, f"the page reached outside the machine: {outside.urls}"


def watched(page: Page) -> list[str]:
    """Uncaught script errors of the page, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    opened = await context.new_page()
    errors = watched(opened)
    yield opened
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
async def phone(phone_context: BrowserContext) -> AsyncIterator[Page]:
    opened = await phone_context.new_page()
    errors = watched(opened)
    yield opened
    assert not errors, f"uncaught errors in the page: {errors}"
