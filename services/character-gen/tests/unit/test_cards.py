"""Character Card V2: export, PNG chunks, validation of what comes in."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import struct
import uuid
import zlib

import pytest
from PIL import Image, PngImagePlugin

from orrery_character_gen import cards
from orrery_character_gen.cards import CardError
from orrery_character_gen.domain import Character, Source, Traits
from orrery_character_gen.handlers import created_event
from orrery_character_gen.procedural import paint

CARD_KEYS = {
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "tags",
    "creator",
    "character_version",
    "extensions",
}


def character(**changes: object) -> Character:
    base = Character(
        id=uuid.uuid4(),
        owner_user_id=uuid.uuid4(),
        source=Source.GENERATED,
        name="Orla Venn",
        planet="Caldera IX",
        traits=Traits("female", "lava Magmoid", "smuggler"),
        personality="Hot-tempered, loyal, laughs like a landslide.",
        backstory="Orla ran contraband through the lava tubes of Caldera IX for a decade.",
        speaking_style="Gravelly, blunt, fond of volcanic curses.",
        greeting="You look like you need something moved. Quietly.",
        image_prompt="A glowing rock-skinned alien in a smuggler's hood.",
        tags=("smuggler", "fiery"),
        portrait_provider="procedural",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def png(width: int = 16, height: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


def test_an_exported_card_is_a_v2_card_with_every_field_and_orrery_extensions() -> None:
    c = character()
    card = cards.card_for(c)
    assert card["spec"] == "chara_card_v2" and card["spec_version"] == "2.0"
    assert set(card["data"]) >= CARD_KEYS
    data = card["data"]
    assert data["name"] == "Orla Venn"
    assert data["first_mes"] == c.greeting
    assert data["personality"] == c.personality
    assert data["tags"] == ["smuggler", "fiery"]
    assert c.backstory in data["description"]
    orrery = data["extensions"]["orrery"]
    assert orrery["planet"] == "Caldera IX"
    assert (orrery["sex"], orrery["species"], orrery["archetype"]) == ("female", "lava Magmoid", "smuggler")
    assert orrery["speaking_style"] == c.speaking_style


def test_an_exported_card_imports_back_to_the_same_persona() -> None:
    c = character()
    fields = cards.imported_fields(cards.parse_card(cards.card_json(c)))
    assert fields["name"] == c.name and fields["planet"] == c.planet
    assert (fields["sex"], fields["species"], fields["archetype"]) == ("female", "lava Magmoid", "smuggler")
    for key in ("personality", "backstory", "speaking_style", "greeting", "image_prompt"):
        assert fields[key] == getattr(c, key)
    assert fields["tags"] == list(c.tags)


def test_a_card_embedded_in_a_png_reads_back_and_the_image_still_opens() -> None:
    body = cards.card_json(character())
    carrier = cards.embed_card(png(), body)
    assert cards.card_text_from_png(carrier) == body
    with Image.open(io.BytesIO(carrier)) as image:
        image.load()
        assert base64.b64decode(image.text["chara"]) == body  # type: ignore[attr-defined]


def test_embedding_a_card_again_replaces_the_old_one() -> None:
    first = cards.embed_card(png(), b'{"old":1}')
    second = cards.embed_card(first, b'{"new":2}')
    texts = [data for tag, data in cards.iter_chunks(second) if tag == b"tEXt"]
    assert len(texts) == 1
    assert cards.card_text_from_png(second) == b'{"new":2}'


def test_a_card_in_an_itxt_chunk_written_by_another_tool_is_read() -> None:
    info = PngImagePlugin.PngInfo()
    body = cards.card_json(character())
    info.add_itxt("chara", base64.b64encode(body).decode(), zip=True)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG", pnginfo=info)
    assert cards.card_text_from_png(out.getvalue()) == body


def test_a_png_without_a_chara_chunk_is_refused_as_carrying_no_card() -> None:
    with pytest.raises(CardError) as caught:
        cards.card_text_from_png(png())
    assert (caught.value.code, caught.value.status) == ("no_card_in_png", 422)


def test_a_png_with_a_corrupted_chunk_is_refused() -> None:
    data = bytearray(cards.embed_card(png(), b"{}"))
    data[40] ^= 0xFF
    with pytest.raises(CardError) as caught:
        cards.card_text_from_png(bytes(data))
    assert caught.value.code == "invalid_png"


def test_a_truncated_png_is_refused() -> None:
    with pytest.raises(CardError, match=r"truncated|IEND"):
        list(cards.iter_chunks(png()[:-20]))


def test_a_chara_chunk_that_is_not_base64_is_refused() -> None:
    chunk = b"chara\x00%%%not base64%%%"
    raw = png()
    iend = raw.rindex(b"IEND") - 4
    crc = struct.pack(">I", zlib.crc32(b"tEXt" + chunk) & 0xFFFFFFFF)
    forged = raw[:iend] + struct.pack(">I", len(chunk)) + b"tEXt" + chunk + crc + raw[iend:]
    with pytest.raises(CardError) as caught:
        cards.card_text_from_png(forged)
    assert caught.value.code == "invalid_card"


@pytest.mark.parametrize(
    ("raw", "code", "status"),
    [
        (b"not json at all", "invalid_json", 400),
        (b"\xff\xfe\x00", "invalid_json", 400),
        (b"[1, 2, 3]", "not_a_card", 422),
        (b'{"name": "Flat V1 card"}', "not_a_card", 422),
        (b'{"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "x"}}', "unsupported_card_spec", 422),
        (b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": ""}}', "invalid_card", 422),
        (b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x", "tags": "a"}}', "invalid_card", 422),
    ],
)
def test_malformed_or_foreign_json_is_refused_with_a_clear_code(raw: bytes, code: str, status: int) -> None:
    with pytest.raises(CardError) as caught:
        cards.parse_card(raw)
    assert (caught.value.code, caught.value.status) == (code, status)


def test_absurdly_nested_json_is_refused_rather_than_crashing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(CardError) as caught:
        cards.parse_card(deep)
    assert caught.value.status == 400
    nested = '{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x", "extensions": {"a": '
    with pytest.raises(CardError) as caught:
        cards.parse_card((nested + "[" * 900 + "]" * 900 + "}}}").encode())
    assert (caught.value.code, caught.value.status) == ("invalid_card", 422)


def test_a_card_with_nul_characters_is_refused() -> None:
    raw = b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x\\u0000y"}}'
    with pytest.raises(CardError, match="NUL"):
        cards.parse_card(raw)


def test_a_card_with_a_lone_surrogate_is_refused() -> None:
    in_a_field = b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x\\ud800y"}}'
    with pytest.raises(CardError, match=r"data\.name"):
        cards.parse_card(in_a_field)
    in_an_extension = (
        b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x", "extensions": {"k": "\\udfff"}}}'
    )
    with pytest.raises(CardError, match="Unicode"):
        cards.parse_card(in_an_extension)


def test_an_overlong_field_is_refused_naming_it() -> None:
    raw = json.dumps({"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x" * 101}}).encode()
    with pytest.raises(CardError, match=r"data\.name"):
        cards.parse_card(raw)


def test_a_foreign_card_maps_onto_a_persona_and_exports_its_own_wording_back() -> None:
    foreign = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Bramble",
            "description": "A hedge wizard who lives in a teapot.",
            "personality": "",
            "first_mes": "",
            "alternate_greetings": ["Mind the steam!"],
            "mes_example": "<START>\n{{char}}: Tea?",
            "tags": ["Cozy", "Magic", "cozy"],
            "creator": "someone",
            "character_book": {"entries": []},
            "extensions": {"depth_prompt": {"depth": 4, "prompt": "x"}},
        },
    }
    fields = cards.imported_fields(cards.parse_card(json.dumps(foreign).encode()))
    assert fields["name"] == "Bramble"
    assert fields["backstory"] == "A hedge wizard who lives in a teapot."
    assert fields["personality"] == "A hedge wizard who lives in a teapot."
    assert fields["greeting"] == "Mind the steam!"
    assert fields["tags"] == ["cozy", "magic"]
    imported = character(
        name="Bramble",
        traits=Traits(fields["sex"], fields["species"], fields["archetype"]),
        card_extras=fields["card_extras"],
    )
    exported = cards.card_for(imported)["data"]
    assert exported["description"] == "A hedge wizard who lives in a teapot."
    assert exported["mes_example"] == "<START>\n{{char}}: Tea?"
    assert exported["creator"] == "someone"
    assert exported["character_book"] == {"entries": []}
    assert exported["extensions"]["depth_prompt"] == {"depth": 4, "prompt": "x"}
    assert "orrery" in exported["extensions"]


def test_a_procedural_portrait_png_can_carry_a_card() -> None:
    art = paint(Traits("male", "Grey", "smuggler"), 1, png_size=64)
    body = cards.card_json(character())
    assert cards.card_text_from_png(cards.embed_card(art.png, body)) == body


def test_an_imported_cards_alternate_greetings_travel_in_character_created_besides_its_greeting() -> None:
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Bramble",
            "description": "A hedge wizard.",
            "first_mes": "",
            "alternate_greetings": ["Mind the steam!", "  ", "Tea first.", "Tea first."],
        },
    }
    fields = cards.imported_fields(cards.parse_card(json.dumps(card).encode()))
    imported = character(name="Bramble", greeting=fields["greeting"], card_extras=fields["card_extras"])
    event = created_event(imported)
    # The first alternate became the greeting (first_mes was empty); the rest are its alternatives, once each.
    assert (event.greeting, event.alternate_greetings) == ("Mind the steam!", ["Tea first."])
