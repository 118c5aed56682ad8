"""Merging extractions into a dossier, and keeping what users decided in their edits."""

from __future__ import annotations

from orrery_dossier.domain import (
    ExtractedCharacter,
    Extraction,
    apply_user_edit,
    changed_sections,
    known_terms,
    merge_extraction,
    merge_text,
    suggested_title,
)
from orrery_shared.events import DossierCharacter, DossierSnapshot


def mara(**fields: object) -> DossierCharacter:
    values: dict[str, object] = {"name": "Mara", "description": "A smuggler.", "relationships": ["Sister of Lena"]}
    values.update(fields)
    return DossierCharacter(**values)


def test_the_same_character_in_other_case_and_spacing_is_merged_not_duplicated() -> None:
    current = DossierSnapshot(characters=[mara(character_arc="Learns to trust.")])
    found = Extraction(
        characters=[
            ExtractedCharacter(
                name="  MARA ",
                description="She grew up on Titan.",
                relationships=["sister of lena", "Rival of Oberon"],
                character_arc="Learns to trust. Then she leads the rebellion.",
            )
        ]
    )
    merged = merge_extraction(current, found)
    assert len(merged.characters) == 1
    character = merged.characters[0]
    assert character.name == "Mara"
    assert character.description == "A smuggler. She grew up on Titan."
    assert character.relationships == ["Sister of Lena", "Rival of Oberon"]
    assert character.character_arc == "Learns to trust. Then she leads the rebellion."


def test_new_characters_are_added_and_lists_are_deduplicated_in_order() -> None:
    current = DossierSnapshot(
        characters=[mara()], themes=["Trust"], locations=["Titan"], plot_points=["Mara steals the map."]
    )
    found = Extraction(
        characters=[ExtractedCharacter(name="Oberon", description="The tyrant of Glass City.")],
        themes=["trust", "Betrayal", "betrayal "],
        locations=["Glass City", "titan."],
        plot_points=["Mara steals the map", "Oberon hunts her."],
    )
    merged = merge_extraction(current, found)
    assert [c.name for c in merged.characters] == ["Mara", "Oberon"]
    assert merged.themes == ["Trust", "Betrayal"]
    assert merged.locations == ["Titan", "Glass City"]
    assert merged.plot_points == ["Mara steals the map.", "Oberon hunts her."]
    assert changed_sections(current, merged) == ["characters", "themes", "locations", "plot_points"]


def test_an_extraction_with_nothing_new_changes_no_section() -> None:
    current = DossierSnapshot(characters=[mara()], themes=["Trust"])
    found = Extraction(characters=[ExtractedCharacter(name="mara", description="A smuggler.")], themes=["TRUST"])
    assert changed_sections(current, merge_extraction(current, found)) == []


def test_a_description_already_contained_is_kept_and_a_fuller_one_replaces_it() -> None:
    assert merge_text("A smuggler from Titan.", "a smuggler") == "A smuggler from Titan."
    assert merge_text("A smuggler.", "A smuggler. Born on Titan.") == "A smuggler. Born on Titan."
    assert merge_text("", "Born on Titan.") == "Born on Titan."


def test_merged_texts_and_names_stay_within_the_snapshot_limits() -> None:
    current = DossierSnapshot(characters=[mara(description="x" * 3990 + ".")])
    found = Extraction(
        characters=[
            ExtractedCharacter(name="Mara", description="A brand new sentence that does not fit."),
            ExtractedCharacter(name="N" * 500, description="y " * 5000),
        ],
        themes=["t" * 5000],
    )
    merged = merge_extraction(current, found)
    DossierSnapshot.model_validate(merged.model_dump())
    assert merged.characters[0].description == current.characters[0].description
    assert len(merged.characters[1].name) <= 200
    assert len(merged.characters[1].description) <= 4000
    assert len(merged.themes[0]) <= 1000


def test_a_character_the_user_deleted_is_not_resurrected_by_an_extraction() -> None:
    before = DossierSnapshot(characters=[mara(), DossierCharacter(name="Bob", description="A cook.")])
    after = DossierSnapshot(characters=[mara()])
    overrides = apply_user_edit(before, after)
    found = Extraction(characters=[ExtractedCharacter(name="bob", description="A cook with a secret.")])
    assert [c.name for c in merge_extraction(after, found, overrides).characters] == ["Mara"]


def test_a_description_the_user_rewrote_is_not_overwritten_by_a_merge() -> None:
    before = DossierSnapshot(characters=[mara()])
    after = DossierSnapshot(characters=[mara(description="A retired pilot, not a smuggler.")])
    overrides = apply_user_edit(before, after)
    found = Extraction(
        characters=[
            ExtractedCharacter(
                name="Mara", description="A smuggler.", relationships=["Friend of Tom"], character_arc="Goes home."
            )
        ]
    )
    character = merge_extraction(after, found, overrides).characters[0]
    assert character.description == "A retired pilot, not a smuggler."
    # What the user did not touch still grows.
    assert character.relationships == ["Sister of Lena", "Friend of Tom"]
    assert character.character_arc == "Goes home."


def test_items_and_relationships_the_user_removed_stay_removed() -> None:
    before = DossierSnapshot(characters=[mara()], themes=["Trust", "Greed"], locations=["Titan"])
    after = DossierSnapshot(characters=[mara(relationships=[])], themes=["Trust"], locations=["Titan"])
    overrides = apply_user_edit(before, after)
    found = Extraction(
        characters=[ExtractedCharacter(name="Mara", relationships=["sister of Lena"])],
        themes=["greed", "Hope"],
    )
    merged = merge_extraction(after, found, overrides)
    assert merged.themes == ["Trust", "Hope"]
    assert merged.characters[0].relationships == []


def test_adding_back_what_was_removed_lifts_the_block() -> None:
    first = DossierSnapshot(characters=[mara()], themes=["Greed"])
    removed = DossierSnapshot(characters=[], themes=[])
    overrides = apply_user_edit(first, removed)
    overrides = apply_user_edit(removed, first, overrides)
    assert overrides.removed["characters"] == []
    assert overrides.removed["themes"] == []


def test_characters_a_user_creates_with_text_are_pinned_and_blank_ones_may_be_filled() -> None:
    created = DossierSnapshot(
        characters=[DossierCharacter(name="Vex", description="Mine."), DossierCharacter(name="Ana")]
    )
    overrides = apply_user_edit(None, created)
    found = Extraction(
        characters=[
            ExtractedCharacter(name="Vex", description="Extracted."),
            ExtractedCharacter(name="Ana", description="A medic."),
        ]
    )
    merged = merge_extraction(created, found, overrides)
    assert [c.description for c in merged.characters] == ["Mine.", "A medic."]


def test_the_models_title_is_used_only_while_the_dossier_has_none() -> None:
    assert suggested_title("", Extraction(title="The Titan Run")) == "The Titan Run"
    assert suggested_title("Mine", Extraction(title="The Titan Run")) == "Mine"


def test_known_terms_cover_names_locations_and_removed_characters() -> None:
    snapshot = DossierSnapshot(characters=[mara(name="Mara Voss")], locations=["Glass City"])
    overrides = apply_user_edit(DossierSnapshot(characters=[DossierCharacter(name="Bob")]), DossierSnapshot())
    assert set(known_terms(snapshot, overrides)) == {"mara", "voss", "glass", "city", "bob"}
