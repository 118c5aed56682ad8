"""The dossier panel: filled by the story's extraction, live, and editable without losing a word to a conflict."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.client import EXTRACTION_USES, SLOW, as_user, continue_as_guest, finished, say, shoot, spin
from tests.support.llm_stub import StubControl

pytestmark = pytest.mark.e2e

EXTRACTED = {
    "title": "The Glass Citadel",
    "characters": [
        {
            "name": "Ilse Varga",
            "description": "A cartographer who hides a star map.",
            "relationships": ["rival of Captain Oduya"],
            "character_arc": "",
        }
    ],
    "themes": ["trust"],
    "locations": ["the Glass Citadel on Nereid"],
    "plot_points": ["Ilse hides the star map in the Glass Citadel."],
}
STORY = "Ilse Varga hides the star map in the Glass Citadel on Nereid, far from Captain Oduya."


def panel(page: Page) -> Locator:
    return page.get_by_role("complementary", name="Dossier")


async def chat_with_extraction(page: Page, stub: StubControl) -> None:
    stub.script(model="orrery-extraction", content=json.dumps(EXTRACTED), times=EXTRACTION_USES)
    await continue_as_guest(page)
    await spin(page)
    await expect(panel(page)).to_contain_text("No dossier yet")
    await finished(await say(page, STORY))
    await expect(panel(page)).to_contain_text("Ilse Varga", timeout=SLOW)


async def project_of(page: Page) -> str:
    project = await page.locator("#screen-chat").get_attribute("data-project-id")
    assert project
    return project


async def test_the_dossier_appears_when_the_story_is_extracted(page: Page, stub: StubControl) -> None:
    stub.script(model="orrery-extraction", content=json.dumps(EXTRACTED), times=EXTRACTION_USES)
    await continue_as_guest(page)
    await spin(page)
    await expect(panel(page)).to_contain_text("No dossier yet")
    await shoot(page, "desktop-15-dossier-empty")
    await finished(await say(page, STORY))

    dossier = panel(page)
    await expect(dossier).to_contain_text("The Glass Citadel", timeout=SLOW)
    await expect(dossier).to_contain_text("Ilse Varga")
    await expect(dossier).to_contain_text("A cartographer who hides a star map.")
    await expect(dossier).to_contain_text("rival of Captain Oduya")
    await expect(dossier.locator(".chips")).to_contain_text("trust")
    await expect(dossier).to_contain_text("the Glass Citadel on Nereid")
    await expect(dossier).to_contain_text("Ilse hides the star map in the Glass Citadel.")
    await expect(page.locator("#dossier-version")).to_have_text("v1")
    await shoot(page, "desktop-16-dossier")


async def test_an_edit_overtaken_by_someone_else_is_explained_and_nothing_typed_is_lost(
    page: Page, stub: StubControl
) -> None:
    await chat_with_extraction(page, stub)
    project = await project_of(page)
    dossier = panel(page)
    await dossier.get_by_role("button", name="Edit").click()
    await dossier.get_by_label("Story title").fill("Mine: the map")
    await dossier.get_by_label("Themes").fill("loyalty\nbetrayal")

    # Meanwhile another device saves its own version first.
    async with await as_user(page) as http:
        current = (await http.get(f"/api/dossiers/{project}")).json()
        theirs: dict[str, Any] = {**current["snapshot_json"], "themes": ["exile"]}
        response = await http.put(
            f"/api/dossiers/{project}",
            json={"snapshot_json": theirs, "version": current["version"], "title": "Theirs: the exile"},
        )
        assert response.status_code == 200, response.text
    await expect(page.locator("#dossier-notice")).to_contain_text("arrived while you were editing")
    await expect(dossier.get_by_label("Themes")).to_have_value("loyalty\nbetrayal")

    await dossier.get_by_role("button", name="Save").click()
    explained = dossier.locator(".conflict-explained")
    await expect(explained).to_have_attribute("role", "alert")
    await expect(explained).to_contain_text("Someone saved first")
    await expect(explained).to_contain_text("version 2")
    await expect(explained).to_contain_text("nothing of it is lost")
    theirs_shown = dossier.get_by_role("region", name="Now in the dossier (version 2)")
    await expect(theirs_shown).to_contain_text("Theirs: the exile")
    await expect(theirs_shown).to_contain_text("exile")
    mine = dossier.get_by_role("region", name="Your edit")
    await expect(mine.get_by_label("Story title")).to_have_value("Mine: the map")
    await expect(mine.get_by_label("Themes")).to_have_value("loyalty\nbetrayal")
    await shoot(page, "desktop-17-dossier-conflict")

    await mine.get_by_role("button", name="Save mine").click()
    await expect(page.locator("#dossier-version")).to_have_text("v3")
    await expect(dossier).to_contain_text("Mine: the map")
    await expect(dossier.locator(".chips")).to_have_text("loyaltybetrayal")
    async with await as_user(page) as http:
        saved = (await http.get(f"/api/dossiers/{project}")).json()
    assert saved["version"] == 3 and saved["title"] == "Mine: the map"
    assert saved["snapshot_json"]["themes"] == ["loyalty", "betrayal"]
    assert saved["snapshot_json"]["characters"][0]["name"] == "Ilse Varga"
