"""The roulette's rules without I/O: catalogue, drawing, pins, the no-repeat window, persona limits."""

from __future__ import annotations

import itertools
import random
import uuid

import pytest
from pydantic import ValidationError

from orrery_character_gen.domain import (
    ARCHETYPES,
    SEXES,
    SPECIES,
    NoFreshTraitsError,
    PersonaDraft,
    Pins,
    Traits,
    UnknownTraitError,
    draw_traits,
    portrait_url,
    preset_id,
    request_rng,
)


def test_the_catalogue_offers_alien_genders_and_at_least_thirty_species_and_archetypes() -> None:
    assert len(SPECIES) >= 30 and len(set(SPECIES)) == len(SPECIES)
    assert len(ARCHETYPES) >= 30 and len(set(ARCHETYPES)) == len(ARCHETYPES)
    assert {"galactic emperor", "smuggler", "xenobotanist"} <= set(ARCHETYPES)
    assert len(SEXES) >= 6 and {"female", "male", "agender"} <= set(SEXES)


def test_the_same_seed_and_request_draw_the_same_traits_and_another_request_may_not() -> None:
    request = uuid.uuid4()
    first = [draw_traits(request_rng(7, request), Pins(), set()) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    others = {draw_traits(request_rng(7, uuid.uuid4()), Pins(), set()) for _ in range(20)}
    assert len(others) > 1


def test_pinned_traits_are_honoured_whatever_their_case_or_separators() -> None:
    pins = Pins.from_overrides("FEMALE", "insectoid_mantid", "Galactic-Emperor")
    traits = draw_traits(random.Random(1), pins, set())
    assert traits == Traits("female", "insectoid Mantid", "galactic emperor")


def test_a_blank_override_counts_as_not_pinned() -> None:
    assert Pins.from_overrides("  ", None, "") == Pins()


def test_an_unknown_pinned_trait_is_refused_naming_the_trait() -> None:
    with pytest.raises(UnknownTraitError, match="unknown species 'space elf'"):
        Pins.from_overrides(None, "space elf", None)


def test_a_draw_never_repeats_a_recent_combination_even_when_few_remain() -> None:
    pins = Pins(species="cyborg", archetype="smuggler")
    recent = {Traits(s, "cyborg", "smuggler").combination() for s in SEXES[:-1]}
    for seed in range(50):
        assert draw_traits(random.Random(seed), pins, recent) == Traits(SEXES[-1], "cyborg", "smuggler")


def test_recent_combinations_are_compared_without_regard_to_case() -> None:
    pins = Pins(sex="male", species="Grey")
    recent = {Traits("MALE", "grey", a).combination() for a in ARCHETYPES if a != "smuggler"}
    assert draw_traits(random.Random(3), pins, recent).archetype == "smuggler"


def test_when_every_allowed_combination_is_recent_the_draw_fails_clearly() -> None:
    pins = Pins(sex="male", species="Grey", archetype="smuggler")
    with pytest.raises(NoFreshTraitsError, match="unpin a trait"):
        draw_traits(random.Random(0), pins, {Traits("male", "Grey", "smuggler").combination()})


def test_twenty_draws_against_a_growing_history_are_all_different() -> None:
    rng, taken = random.Random(11), set[tuple[str, str, str]]()
    for _ in range(20):
        traits = draw_traits(rng, Pins(species="Martian"), taken)
        assert traits.combination() not in taken
        taken.add(traits.combination())


def test_preset_ids_are_uuid5_of_the_name_and_stable() -> None:
    assert preset_id("Zephyrine Oddlamp") == preset_id("  zephyrine   oddlamp ")
    assert preset_id("Zephyrine Oddlamp").version == 5
    assert preset_id("Zephyrine Oddlamp") != preset_id("KX-7 Kix")


def test_the_portrait_url_is_the_gateway_path() -> None:
    cid = uuid.uuid4()
    assert portrait_url(cid) == f"/api/characters/{cid}/portrait"


def _persona(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "Vexa Quorn",
        "planet": "Tethys Drift",
        "personality": "Sardonic but soft-hearted, collects broken clocks.",
        "backstory": "Born on a drifting ice station, Vexa learned to trade before she learned to walk.",
        "speaking_style": "Clipped sentences, dry jokes.",
        "greeting": "Well, well. A visitor.",
        "image_prompt": "A blue-skinned alien with frost in her hair, retro poster style.",
        "tags": ["Wry", "trader", "wry "],
    }
    return {**base, **changes}


def test_a_persona_normalises_tags_to_distinct_lowercase() -> None:
    assert PersonaDraft.model_validate(_persona()).tags == ["wry", "trader"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "x" * 61), ("backstory", "too short"), ("tags", []), ("tags", ["a"] * 9), ("greeting", "")],
)
def test_a_persona_outside_its_length_limits_is_invalid(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        PersonaDraft.model_validate(_persona(**{field: value}))


def test_nul_characters_from_the_model_are_dropped() -> None:
    persona = PersonaDraft.model_validate(_persona(name="Vexa\x00 Quorn", tags=["w\x00ry"]))
    assert persona.name == "Vexa Quorn" and persona.tags == ["wry"]


def test_a_persona_with_unexpected_fields_is_invalid() -> None:
    with pytest.raises(ValidationError):
        PersonaDraft.model_validate(_persona(secret="x"))


def test_combinations_cover_the_whole_catalogue() -> None:
    # With no pins and nothing recent, any combination can come up: the draw is not stuck on a subset.
    seen = {draw_traits(random.Random(s), Pins(), set()).species for s in range(600)}
    assert seen == set(SPECIES)
    assert len(list(itertools.product(SEXES, SPECIES, ARCHETYPES))) > 20
