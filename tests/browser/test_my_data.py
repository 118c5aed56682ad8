"""Your data from the web client: everything downloads as one archive, and erasing asks first."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.client import as_user, continue_as_guest, finished, say, session, spin
from tests.support.llm_stub import StubControl
from tests.support.platform import GATEWAY

pytestmark = pytest.mark.e2e


async def test_a_user_downloads_everything_then_erases_the_account_after_confirming(
    page: Page, platform: str, stub: StubControl
) -> None:
    await continue_as_guest(page)
    name = await spin(page)
    await finished(await say(page, "Remember the comet."))
    token = (await session(page))["access_token"]

    await page.get_by_role("button", name="Your data").click()
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download everything").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("orrery-export-") and download.suggested_filename.endswith(".zip")
    archive = zipfile.ZipFile(io.BytesIO((await download.path()).read_bytes()))
    assert any(n.startswith("chats/") for n in archive.namelist())
    assert any(n.startswith("characters/") and name.split()[0] in n for n in archive.namelist())

    # Erasing asks first; keeping the account changes nothing.
    await page.get_by_role("button", name="Your data").click()
    await page.get_by_role("button", name="Erase my account…").click()
    await expect(page.get_by_role("heading", name="Erase your account?")).to_be_visible()
    await page.get_by_role("button", name="Keep my account").click()
    async with await as_user(page) as http:
        assert (await http.get("/api/conversations")).status_code == 200

    await page.get_by_role("button", name="Your data").click()
    await page.get_by_role("button", name="Erase my account…").click()
    await page.get_by_role("button", name="Erase everything").click()
    await expect(page.get_by_text("Your account and everything in it were erased.")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('orrery.session')") is None
    async with httpx.AsyncClient(base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}) as http:
        assert (await http.get("/api/conversations")).status_code == 401
