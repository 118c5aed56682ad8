"""Use cases against in-memory fakes: spins, failures, idempotency, merges, presets, imports, scoping."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orrery_character_gen import cards
from orrery_character_gen.adapters import PortraitChain
from orrery_character_gen.domain import SEXES, Source, Traits, preset_id
from orrery_character_gen.handlers import (
    CardImporter,
    CharacterQueries,
    MergeHandler,
    NotFoundError,
    PersonaFailedError,
    PresetChange,
    SpinHandler,
    load_presets,
)
from orrery_character_gen.procedural import ProceduralPortraits
from orrery_character_gen.settings import PRESETS_DIR
from orrery_shared.events import CharacterCreated, CharacterFailed, CharacterRequested, TraitOverrides, UserMerged
from orrery_shared.llm import GeneratedImage, ImageGenerationError, ImageRequest


def spin_request(user: uuid.UUID, **traits: str) -> CharacterRequested:
    return CharacterRequested(request_id=uuid.uuid4(), user_id=user, traits=TraitOverrides(**traits))


@pytest.fixture
def spin(store: Any, writer: Any, painter: Any) -> SpinHandler:
    return SpinHandler(store, writer, painter, seed=1)


async def test_a_spin_stores_a_character_and_publishes_it_with_its_gateway_portrait_url(
    spin: SpinHandler, store: Any
) -> None:
    user = uuid.uuid4()
    request = spin_request(user)
    await spin(request)
    [event] = store.published
    assert isinstance(event, CharacterCreated)
    assert event.request_id == request.request_id and event.owner_user_id == user
    assert event.portrait_url == f"/api/characters/{event.character_id}/portrait"
    assert event.portrait_provider == "procedural"
    assert event.tags == ["friendly", "curious"]
    assert store.characters[event.character_id].traits == Traits(event.sex, event.species, event.archetype)


async def test_a_redelivered_spin_publishes_nothing_new(spin: SpinHandler, store: Any, writer: Any) -> None:
    request = spin_request(uuid.uuid4())
    await spin(request)
    await spin(request)
    assert len(store.published) == 1
    assert len(writer.calls) == 1


async def test_pinned_traits_reach_the_persona_writer(spin: SpinHandler, writer: Any) -> None:
    await spin(spin_request(uuid.uuid4(), sex="Male", species="grey", archetype="bounty hunter"))
    assert writer.calls[0][0] == Traits("male", "Grey", "bounty hunter")


async def test_an_unknown_override_fails_the_spin_without_retry(spin: SpinHandler, store: Any, writer: Any) -> None:
    request = spin_request(uuid.uuid4(), archetype="accountant")
    await spin(request)
    [event] = store.published
    assert isinstance(event, CharacterFailed)
    assert event.request_id == request.request_id and event.retryable is False
    assert "accountant" in event.reason
    assert writer.calls == [] and store.characters == {}


async def test_a_persona_failure_publishes_a_failure_and_stores_no_character(
    spin: SpinHandler, store: Any, writer: Any
) -> None:
    writer.failures.append(PersonaFailedError("the character writer returned an unusable persona", retryable=True))
    await spin(spin_request(uuid.uuid4()))
    [event] = store.published
    assert isinstance(event, CharacterFailed) and event.retryable is True
    assert store.characters == {} and store.portraits == {}


async def test_spin_again_never_repeats_traits_among_the_last_twenty(spin: SpinHandler, store: Any) -> None:
    user = uuid.uuid4()
    # Pin species and archetype so only len(SEXES) combinations exist: the window must force variety.
    for _ in range(len(SEXES)):
        await spin(spin_request(user, species="cyborg", archetype="smuggler"))
    sexes = [e.sex for e in store.published]
    assert sorted(sexes) == sorted(SEXES)
    await spin(spin_request(user, species="cyborg", archetype="smuggler"))
    last = store.published[-1]
    assert isinstance(last, CharacterFailed) and not last.retryable


async def test_the_writer_is_asked_to_avoid_recent_names(spin: SpinHandler, writer: Any) -> None:
    user = uuid.uuid4()
    await spin(spin_request(user))
    await spin(spin_request(user))
    first_name = f"Zorb {writer.calls[0][0].species.split()[-1]} 1"
    assert writer.calls[1][1] == [first_name]


async def test_excluded_characters_traits_are_not_drawn_if_the_caller_may_see_them(
    store: Any, writer: Any, painter: Any
) -> None:
    # No recent window here, so only the exclusion list can keep a combination out.
    spin = SpinHandler(store, writer, painter, recent_window=0, seed=1)
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    pins = {"sex": "female", "species": "Martian", "archetype": "smuggler"}
    await spin(spin_request(owner, **pins))
    first = store.published[0].character_id

    def pinned(user: uuid.UUID, exclude: list[uuid.UUID]) -> CharacterRequested:
        return CharacterRequested(
            request_id=uuid.uuid4(), user_id=user, traits=TraitOverrides(**pins), exclude_character_ids=exclude
        )

    await spin(pinned(owner, []))
    assert isinstance(store.published[-1], CharacterCreated)
    await spin(pinned(owner, [first]))
    assert isinstance(store.published[-1], CharacterFailed)
    await spin(pinned(stranger, [first]))  # not theirs to see: ignored
    assert isinstance(store.published[-1], CharacterCreated)


async def test_a_merge_moves_the_guests_characters_once_and_later_spins_land_on_the_account(
    spin: SpinHandler, store: Any
) -> None:
    guest, account = uuid.uuid4(), uuid.uuid4()
    await spin(spin_request(guest))
    merge = UserMerged(from_user_id=guest, to_user_id=account)
    handler = MergeHandler(store, "test")
    await handler(merge)
    await handler(merge)
    assert {c.owner_user_id for c in store.characters.values()} == {account}
    await spin(spin_request(guest))  # a spin that was in flight when the merge happened
    assert store.published[-1].owner_user_id == account


async def test_presets_load_once_with_deterministic_ids_and_no_owner(store: Any, painter: Any, tmp_path: Path) -> None:
    first = await load_presets(store, painter, PRESETS_DIR)
    assert len(first) >= 3 and set(first.values()) == {PresetChange.INSERTED}
    again = await load_presets(store, painter, PRESETS_DIR)
    assert set(again.values()) == {PresetChange.UNCHANGED}
    created = [e for e in store.published if isinstance(e, CharacterCreated)]
    assert len(created) == len(first)
    assert all(e.owner_user_id is None and e.request_id is None for e in created)
    assert {e.character_id for e in created} == {preset_id(e.name) for e in created}


async def test_a_changed_preset_file_is_published_again_and_a_broken_one_is_skipped(
    store: Any, painter: Any, tmp_path: Path
) -> None:
    source = json.loads((PRESETS_DIR / "kix.json").read_text())
    (tmp_path / "kix.json").write_text(json.dumps(source))
    (tmp_path / "broken.json").write_text("{not json")
    assert await load_presets(store, painter, tmp_path) == {"KX-7 Kix": PresetChange.INSERTED}
    source["data"]["personality"] = "Now slightly warmer."
    (tmp_path / "kix.json").write_text(json.dumps(source))
    assert await load_presets(store, painter, tmp_path) == {"KX-7 Kix": PresetChange.UPDATED}
    assert len(store.published) == 2


async def test_another_users_character_is_not_found_but_presets_are_visible_to_all(
    spin: SpinHandler, store: Any, painter: Any
) -> None:
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    await spin(spin_request(owner))
    await load_presets(store, painter, PRESETS_DIR)
    character_id = store.published[0].character_id
    queries = CharacterQueries(store, painter)
    assert (await queries.character(owner, character_id)).id == character_id
    with pytest.raises(NotFoundError):
        await queries.character(stranger, character_id)
    with pytest.raises(NotFoundError):
        await queries.portrait(None, character_id)
    preset = (await store.presets())[0]
    assert (await queries.character(None, preset.id)).source is Source.PRESET
    assert (await queries.portrait(stranger, preset.id)).owner_user_id is None


async def test_an_imported_json_card_belongs_to_the_caller_with_a_procedural_portrait(store: Any, painter: Any) -> None:
    user = uuid.uuid4()
    importer = CardImporter(store, painter, max_pixels=10_000_000)
    body = (PRESETS_DIR / "sporra.json").read_bytes()
    character = await importer(user, body)
    assert character.owner_user_id == user and character.source is Source.IMPORTED
    assert character.traits == Traits("parthenogenetic", "fungal Mycelid", "xenobotanist")
    event = store.published[-1]
    assert isinstance(event, CharacterCreated) and event.character_id == character.id and event.owner_user_id == user
    assert store.portraits[character.id].content_type == "image/svg+xml"


async def test_an_imported_png_card_keeps_its_image_without_the_old_card_chunk(store: Any, painter: Any) -> None:
    image = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(image, format="PNG")
    body = cards.embed_card(image.getvalue(), (PRESETS_DIR / "kix.json").read_bytes())
    character = await CardImporter(store, painter, max_pixels=10_000_000)(uuid.uuid4(), body)
    stored = store.portraits[character.id]
    assert stored.provider == "imported" and stored.content_type == "image/png"
    with pytest.raises(cards.CardError):
        cards.card_text_from_png(stored.data)
    with Image.open(io.BytesIO(stored.data)) as decoded:
        assert decoded.size == (40, 30)


async def test_a_png_card_whose_image_is_too_large_is_refused(store: Any, painter: Any) -> None:
    image = io.BytesIO()
    Image.new("RGB", (300, 300)).save(image, format="PNG")
    body = cards.embed_card(image.getvalue(), (PRESETS_DIR / "kix.json").read_bytes())
    with pytest.raises(cards.CardError) as caught:
        await CardImporter(store, painter, max_pixels=200 * 200)(uuid.uuid4(), body)
    assert caught.value.code == "invalid_png" and store.characters == {}


class ScriptedImages:
    name = "scripted"

    def __init__(self, *results: bytes | Exception, delay: float = 0.0) -> None:
        self.results = list(results)
        self.delay = delay
        self.requests: list[ImageRequest] = []

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return GeneratedImage(data=result, mime_type="?", provider="scripted", model="m", latency_s=0)

    async def aclose(self) -> None:
        pass


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 0, 200)).save(out, format="JPEG")
    return out.getvalue()


async def test_the_portrait_chain_falls_back_to_procedural_when_providers_fail() -> None:
    failing = ScriptedImages(ImageGenerationError("boom", status_code=500))
    garbage = ScriptedImages(b"this is not an image")
    chain = PortraitChain([("openai", failing), ("leonardo", garbage)], ProceduralPortraits(png_size=64))
    portrait = await chain.paint(Traits("male", "Grey", "smuggler"), "a grey smuggler", seed=3)
    assert portrait.provider == "procedural" and portrait.content_type == "image/svg+xml"
    assert portrait.fell_back_from == ("openai", "leonardo")
    assert "male Grey smuggler" in failing.requests[0].prompt


async def test_the_portrait_chain_gives_up_on_a_slow_provider() -> None:
    slow = ScriptedImages(_jpeg(), delay=5)
    chain = PortraitChain([("openai", slow)], ProceduralPortraits(png_size=64), timeout_s=0.05)
    assert (await chain.paint(Traits("male", "Grey", "smuggler"), "x", seed=3)).provider == "procedural"


async def test_a_provider_jpeg_is_kept_with_a_png_rendition_for_cards() -> None:
    chain = PortraitChain([("openai", ScriptedImages(_jpeg()))], ProceduralPortraits(png_size=64))
    portrait = await chain.paint(Traits("male", "Grey", "smuggler"), "x", seed=3)
    assert portrait.provider == "openai" and portrait.content_type == "image/jpeg"
    png = portrait.png_bytes()
    assert png is not None and png.startswith(cards.PNG_SIGNATURE)


async def test_a_procedural_portraits_png_card_is_drawn_on_demand_and_carries_the_card(
    spin: SpinHandler, store: Any, painter: Any
) -> None:
    user = uuid.uuid4()
    await spin(spin_request(user))
    character_id = store.published[0].character_id
    assert store.portraits[character_id].png is None  # only the SVG is stored
    card_png = await CharacterQueries(store, painter).card_png(user, character_id)
    with Image.open(io.BytesIO(card_png)) as image:
        assert image.size == (64, 64)
    assert json.loads(cards.card_text_from_png(card_png))["data"]["name"] == store.characters[character_id].name
