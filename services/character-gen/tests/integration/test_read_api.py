"""The read API: scoping by owner, presets, paging, guest merges, and the operational endpoints."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from orrery_character_gen.adapters import PortraitChain
from orrery_character_gen.domain import preset_id
from orrery_character_gen.handlers import PresetChange, load_presets
from orrery_character_gen.procedural import ProceduralPortraits
from orrery_character_gen.repository import PostgresCharacterStore
from orrery_character_gen.settings import PRESETS_DIR
from orrery_shared.db import Database, make_engine
from orrery_shared.events import CharacterCreated
from tests.support.llm_stub import StubControl

from .conftest import Service, sql

pytestmark = pytest.mark.integration

PRESET_NAMES = {"Zephyrine Oddlamp", "Captain Marrow Kettleburn", "Dr. Sporra Vellin", "KX-7 Kix"}


async def test_another_users_character_and_its_portrait_and_cards_are_404(service: Service, stub: StubControl) -> None:
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    event = await service.spin_created(owner)
    for path in ("", "/portrait", "/card", "/card.png"):
        mine = await service.http.get(f"/characters/{event.character_id}{path}", headers=service.as_user(owner))
        assert mine.status_code == 200, path
        theirs = await service.http.get(f"/characters/{event.character_id}{path}", headers=service.as_user(stranger))
        assert theirs.status_code == 404, path
        assert theirs.json() == {"error": {"code": "not_found", "message": "no such character"}}
        anonymous = await service.http.get(f"/characters/{event.character_id}{path}")
        assert anonymous.status_code == 404, path
    listing = await service.http.get("/characters", headers=service.as_user(stranger))
    assert event.character_id not in {item["id"] for item in listing.json()["items"]}


async def test_a_missing_or_malformed_id_is_404_and_a_bad_token_is_401(service: Service) -> None:
    user = uuid.uuid4()
    assert (await service.http.get(f"/characters/{uuid.uuid4()}", headers=service.as_user(user))).status_code == 404
    assert (await service.http.get("/characters/not-a-uuid", headers=service.as_user(user))).status_code == 404
    refused = await service.http.get("/characters", headers={"Authorization": "Bearer nonsense"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "malformed"
    assert (await service.http.get("/characters")).status_code == 401


async def test_presets_are_published_once_and_visible_to_everyone(service: Service) -> None:
    ids = {preset_id(name) for name in PRESET_NAMES}
    assert len(list(PRESETS_DIR.glob("*.json"))) == len(PRESET_NAMES)

    def all_presets() -> list[CharacterCreated] | None:
        found = [e for e in service.events.created if e.character_id in ids]
        return found if {e.character_id for e in found} == ids else None

    published = await service.events.wait_for(all_presets)
    assert all(e.owner_user_id is None and e.request_id is None for e in published)
    # Loading them again (as every later start does) finds them unchanged and publishes nothing.
    db = Database(make_engine(service.schema.url, service.schema.name, pool_size=1))
    try:
        again = await load_presets(PostgresCharacterStore(db), PortraitChain([], ProceduralPortraits()), PRESETS_DIR)
    finally:
        await db.dispose()
    assert again == dict.fromkeys(PRESET_NAMES, PresetChange.UNCHANGED)

    listing = await service.http.get("/characters", headers=service.as_user(uuid.uuid4()))
    assert listing.status_code == 200
    body = listing.json()
    assert body["items"] == [] and body["total"] == 0
    assert {p["name"] for p in body["presets"]} == PRESET_NAMES
    assert all(p["owner_user_id"] is None and p["source"] == "preset" for p in body["presets"])
    without = await service.http.get("/characters?presets=false", headers=service.as_user(uuid.uuid4()))
    assert without.json()["presets"] is None

    kix = preset_id("KX-7 Kix")
    anonymous = await service.http.get(f"/characters/{kix}")
    assert anonymous.status_code == 200 and anonymous.json()["species"] == "android"
    portrait = await service.http.get(f"/characters/{kix}/portrait")
    assert portrait.status_code == 200 and portrait.headers["content-type"].startswith("image/svg+xml")
    assert portrait.headers["cache-control"].startswith("public")


async def test_the_listing_is_the_callers_newest_first_and_paged(service: Service, stub: StubControl) -> None:
    user = uuid.uuid4()
    made = [await service.spin_created(user) for _ in range(3)]
    headers = service.as_user(user)
    page1 = (await service.http.get("/characters?limit=2&offset=0&presets=false", headers=headers)).json()
    page2 = (await service.http.get("/characters?limit=2&offset=2&presets=false", headers=headers)).json()
    assert page1["total"] == page2["total"] == 3
    ids = [i["id"] for i in page1["items"]] + [i["id"] for i in page2["items"]]
    assert ids == [str(e.character_id) for e in reversed(made)]
    assert (await service.http.get("/characters?limit=0", headers=headers)).status_code == 422
    assert (await service.http.get("/characters?limit=101", headers=headers)).status_code == 422


async def test_a_guests_characters_belong_to_the_account_after_the_merge(service: Service, stub: StubControl) -> None:
    guest, account = uuid.uuid4(), uuid.uuid4()
    made = {(await service.spin_created(guest)).character_id for _ in range(2)}
    merge = await service.merge(guest, account)

    deadline = time.monotonic() + 30
    while True:
        listing = (await service.http.get("/characters", headers=service.as_user(account))).json()
        if {uuid.UUID(i["id"]) for i in listing["items"]} == made:
            break
        assert time.monotonic() < deadline, "the merge was not applied"
        await asyncio.sleep(0.1)
    assert all(i["owner_user_id"] == str(account) for i in listing["items"])
    some = next(iter(made))
    assert (await service.http.get(f"/characters/{some}", headers=service.as_user(guest))).status_code == 404
    assert (await service.http.get(f"/characters/{some}/portrait", headers=service.as_user(account))).status_code == 200

    # A redelivered merge changes nothing, and the account's next spin avoids the guest's traits too.
    await service.merge(guest, account)
    await service.producer.send_and_wait(
        merge.TOPIC, merge.model_dump_json().encode(), key=merge.partition_key().encode()
    )
    await service.spin_created(account)
    listing = (await service.http.get("/characters", headers=service.as_user(account))).json()
    assert listing["total"] == 3


async def test_erasing_a_user_deletes_their_characters_portraits_and_spins_only(
    service: Service, stub: StubControl
) -> None:
    user, guest, bystander = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    theirs = (await service.spin_created(user)).character_id
    guests = (await service.spin_created(guest)).character_id
    kept = (await service.spin_created(bystander)).character_id
    await service.erase(user, [guest])
    await service.erase(user, [guest])  # told twice: harmless

    deadline = time.monotonic() + 30
    while (await service.http.get(f"/characters/{guests}", headers=service.as_user(guest))).status_code != 404:
        assert time.monotonic() < deadline, "the erasure was not applied"
        await asyncio.sleep(0.1)
    assert (await service.http.get(f"/characters/{theirs}", headers=service.as_user(user))).status_code == 404
    users = [user, guest]
    for table, column in (("characters", "owner_user_id"), ("spin_requests", "user_id")):
        rows = await asyncio.to_thread(
            sql, service.schema, f"SELECT count(*) FROM {table} WHERE {column} = ANY(%s)", users
        )
        assert rows[0][0] == 0, table
    portraits = "SELECT count(*) FROM portraits WHERE character_id = ANY(%s)"
    assert (await asyncio.to_thread(sql, service.schema, portraits, [theirs, guests]))[0][0] == 0
    assert (await service.http.get(f"/characters/{kept}", headers=service.as_user(bystander))).status_code == 200


async def test_health_readiness_and_metrics_answer(service: Service) -> None:
    assert (await service.http.get("/healthz")).json() == {"status": "ok"}
    ready = await service.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"kafka": "ok", "postgres": "ok"}
    metrics = (await service.http.get("/metrics")).text
    assert "orrery_character_spins_total" in metrics


async def test_the_trait_catalogue_is_published(service: Service) -> None:
    body = (await service.http.get("/characters/traits")).json()
    assert len(body["species"]) >= 30 and len(body["archetypes"]) >= 30 and "galactic emperor" in body["archetypes"]
    assert body["recent_window"] == 20
