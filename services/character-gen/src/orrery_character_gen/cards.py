"""Character Card V2 (`chara_card_v2`, spec 2.0): exporting characters, reading cards from JSON or PNG.

A PNG card is an ordinary PNG whose `tEXt` chunk keyed `chara` holds the card JSON, base64-encoded. Chunks are
read and written here without decoding the image, so a card's text can be checked before any pixel is touched.
Orrery's own fields (planet, traits, and the persona fields cards have no slot for) travel under
`data.extensions.orrery`, so an exported card imports back to the same character.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orrery_character_gen.domain import Character

SPEC = "chara_card_v2"
SPEC_VERSION = "2.0"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHARA_KEYWORD = b"chara"
CARD_TEXT_KEYWORDS = (b"chara", b"ccv3")
MAX_CARD_JSON_BYTES = 2 * 1024 * 1024
MAX_PNG_CHUNKS = 10_000
MAX_NESTING = 32

# The card fields an Orrery character maps onto; anything else a card carries is kept verbatim.
CARD_FIELDS = (
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
)
EXTRA_FIELDS = (
    "scenario",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "creator",
    "character_version",
    "character_book",
    "extensions",
)


class CardError(ValueError):
    """Input that is not an acceptable character card; `code` is stable for clients."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# --- the card model --------------------------------------------------------------------------------------


class OrreryExtension(BaseModel):
    """`data.extensions.orrery`: the fields of an Orrery character a card has no slot for."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    character_id: str | None = Field(None, max_length=64)
    source: str | None = Field(None, max_length=20)
    planet: str = Field("", max_length=80)
    sex: str = Field("", max_length=40)
    species: str = Field("", max_length=60)
    archetype: str = Field("", max_length=60)
    backstory: str = Field("", max_length=8_000)
    speaking_style: str = Field("", max_length=2_000)
    image_prompt: str = Field("", max_length=2_000)
    portrait_provider: str | None = Field(None, max_length=40)


class CardData(BaseModel):
    """`data` of a V2 card; the limits keep one card's text to a sensible size."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=32_000)
    personality: str = Field(default="", max_length=8_000)
    scenario: str = Field(default="", max_length=8_000)
    first_mes: str = Field(default="", max_length=8_000)
    mes_example: str = Field(default="", max_length=16_000)
    creator_notes: str = Field(default="", max_length=8_000)
    system_prompt: str = Field(default="", max_length=8_000)
    post_history_instructions: str = Field(default="", max_length=8_000)
    alternate_greetings: list[str] = Field(default_factory=list, max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=50)
    creator: str = Field(default="", max_length=200)
    character_version: str = Field(default="", max_length=50)
    extensions: dict[str, Any] = Field(default_factory=dict)


class CharacterCardV2(BaseModel):
    """A Character Card V2 document."""

    model_config = ConfigDict(extra="allow")

    spec: Literal["chara_card_v2"]
    spec_version: Literal["2.0"]
    data: CardData


# --- export ------------------------------------------------------------------------------------------------


def card_for(character: Character) -> dict[str, Any]:
    """The V2 card of `character` (fields an imported card brought along are given back as they came)."""
    t = character.traits
    extras = dict(character.card_extras)
    other_extensions = extras.pop("extensions", None)
    orrery = {
        "character_id": str(character.id),
        "source": character.source.value,
        "planet": character.planet,
        "sex": t.sex,
        "species": t.species,
        "archetype": t.archetype,
        "backstory": character.backstory,
        "speaking_style": character.speaking_style,
        "image_prompt": character.image_prompt,
        "portrait_provider": character.portrait_provider,
    }
    data: dict[str, Any] = {
        "name": character.name,
        "description": f"{character.name} is a {t.describe()} from {character.planet}.\n\n{character.backstory}",
        "personality": character.personality,
        "scenario": (
            "{{user}} has just been matched with {{char}} on Orrery's chat roulette and they are "
            "talking across the stars."
        ),
        "first_mes": character.greeting,
        "mes_example": "",
        "creator_notes": f"An Orrery character: a {t.describe()} from {character.planet}.",
        "system_prompt": (
            f"You are {{{{char}}}}, a {t.describe()} from {character.planet}. Stay in character.\n"
            f"Speaking style: {character.speaking_style}"
        ),
        "post_history_instructions": "",
        "alternate_greetings": [],
        "tags": list(character.tags),
        "creator": "Orrery",
        "character_version": "1",
    }
    for key, value in extras.items():
        data[key] = value
    extensions: dict[str, Any] = dict(other_extensions) if isinstance(other_extensions, dict) else {}
    extensions["orrery"] = orrery
    data["extensions"] = extensions
    return {"spec": SPEC, "spec_version": SPEC_VERSION, "data": data}


def card_json(character: Character) -> bytes:
    """The card as compact UTF-8 JSON."""
    return json.dumps(card_for(character), ensure_ascii=False, separators=(",", ":")).encode()


# --- PNG chunks --------------------------------------------------------------------------------------------


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def iter_chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, data) of each chunk; raises CardError on a truncated or corrupt file."""
    if not png.startswith(PNG_SIGNATURE):
        raise CardError("invalid_png", "the file is not a PNG", 400)
    pos, count = len(PNG_SIGNATURE), 0
    while pos < len(png):
        if pos + 8 > len(png):
            raise CardError("invalid_png", "the PNG is truncated", 400)
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        tag = png[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(png) or not re.fullmatch(rb"[A-Za-z]{4}", tag):
            raise CardError("invalid_png", "the PNG is truncated or corrupt", 400)
        data = png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[end - 4 : end])
        if zlib.crc32(tag + data) & 0xFFFFFFFF != crc:
            raise CardError("invalid_png", f"the PNG's {tag.decode()} chunk fails its checksum", 400)
        yield tag, data
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise CardError("invalid_png", "the PNG has too many chunks", 400)
        pos = end
        if tag == b"IEND":
            return
    raise CardError("invalid_png", "the PNG has no IEND chunk", 400)


def _text_chunk(tag: bytes, data: bytes) -> tuple[bytes, bytes] | None:
    """(keyword, text bytes) of a tEXt, zTXt or iTXt chunk."""
    keyword, sep, rest = data.partition(b"\x00")
    if not sep:
        return None
    if tag == b"tEXt":
        return keyword, rest
    if tag == b"zTXt":
        return keyword, _inflate(rest[1:])
    if tag == b"iTXt":
        if len(rest) < 2:
            return None
        compressed, body = rest[0], rest[2:]
        _lang, _, body = body.partition(b"\x00")
        _translated, _, text = body.partition(b"\x00")
        return keyword, _inflate(text) if compressed else text
    return None


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CARD_JSON_BYTES * 2)
    except zlib.error:
        raise CardError("invalid_png", "a compressed text chunk of the PNG is corrupt", 400) from None
    if inflater.unconsumed_tail:
        raise CardError("too_large", "the card text in the PNG is too large", 413)
    return out


def card_text_from_png(png: bytes) -> bytes:
    """The card JSON carried by a PNG's `chara` text chunk; raises CardError if there is none."""
    for tag, data in iter_chunks(png):
        if tag in (b"tEXt", b"zTXt", b"iTXt"):
            text = _text_chunk(tag, data)
            if text is not None and text[0] == CHARA_KEYWORD:
                try:
                    return base64.b64decode(text[1].strip(), validate=True)
                except (binascii.Error, ValueError):
                    raise CardError("invalid_card", "the PNG's chara chunk is not base64", 422) from None
    raise CardError("no_card_in_png", "the PNG carries no character card (no chara text chunk)", 422)


def strip_card_chunks(png: bytes) -> bytes:
    """`png` without its card text chunks (so a new card can be embedded without a stale one)."""
    out = [PNG_SIGNATURE]
    for tag, data in iter_chunks(png):
        if tag in (b"tEXt", b"zTXt", b"iTXt"):
            text = _text_chunk(tag, data)
            if text is not None and text[0] in CARD_TEXT_KEYWORDS:
                continue
        out.append(_chunk(tag, data))
    return b"".join(out)


def embed_card(png: bytes, card: bytes) -> bytes:
    """`png` with `card` (JSON) base64-encoded in a `chara` tEXt chunk just before IEND."""
    chunk = _chunk(b"tEXt", CHARA_KEYWORD + b"\x00" + base64.b64encode(card))
    out = [PNG_SIGNATURE]
    for tag, data in iter_chunks(strip_card_chunks(png)):
        if tag == b"IEND":
            out.append(chunk)
        out.append(_chunk(tag, data))
    return b"".join(out)


# --- import ------------------------------------------------------------------------------------------------


def parse_card(raw: bytes) -> CharacterCardV2:
    """Validate card JSON; raises CardError saying what is wrong."""
    if len(raw) > MAX_CARD_JSON_BYTES:
        raise CardError("too_large", f"the card JSON is larger than {MAX_CARD_JSON_BYTES} bytes", 413)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise CardError("invalid_json", "the body is neither a PNG nor valid JSON", 400) from None
    except RecursionError:
        raise CardError("invalid_json", "the JSON is nested too deeply", 400) from None
    if not isinstance(document, dict) or "spec" not in document or "data" not in document:
        raise CardError("not_a_card", "the JSON is not a character card (it needs spec and data)")
    if document.get("spec") != SPEC or document.get("spec_version") != SPEC_VERSION:
        raise CardError(
            "unsupported_card_spec",
            f"only {SPEC} version {SPEC_VERSION} cards are accepted, not "
            f"{str(document.get('spec'))[:40]!r} version {str(document.get('spec_version'))[:10]!r}",
        )
    try:
        card = CharacterCardV2.model_validate(document)
    except RecursionError:
        raise CardError("invalid_card", "the card is nested too deeply", 422) from None
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CardError("invalid_card", f"the card is invalid at {where}: {first['msg']}") from None
    _check_structure(document)
    return card


def _check_structure(value: Any) -> None:
    """Refuse what no real card has and storage cannot take: deep nesting, NUL characters, lone surrogates."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > MAX_NESTING:
            raise CardError("invalid_card", f"the card nests deeper than {MAX_NESTING} levels")
        if isinstance(item, str):
            if "\x00" in item:
                raise CardError("invalid_card", "the card contains NUL characters")
            try:
                item.encode()
            except UnicodeEncodeError:
                raise CardError("invalid_card", "the card contains text that is not valid Unicode") from None
        elif isinstance(item, dict):
            stack.extend((k, level + 1) for k in item)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)


def _orrery_extension(data: CardData) -> OrreryExtension | None:
    raw = data.extensions.get("orrery")
    if not isinstance(raw, dict):
        return None
    try:
        return OrreryExtension.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CardError(
            "invalid_card", f"the card is invalid at data.extensions.orrery.{where}: {first['msg']}"
        ) from None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def imported_fields(card: CharacterCardV2) -> dict[str, Any]:
    """The persona of an imported card: Orrery's extension when present, else mapped from the card's fields."""
    data = card.data
    ext = _orrery_extension(data)
    name = data.name.strip()
    if not name:
        raise CardError("invalid_card", "the card is invalid at data.name: the name is blank")
    tags = list(dict.fromkeys(t.strip().lower()[:30] for t in data.tags if t.strip()))[:12]
    greeting = data.first_mes.strip() or next((g for g in data.alternate_greetings if g.strip()), "")
    personality = data.personality.strip() or _clip(data.description.strip(), 1_200)
    fields: dict[str, Any] = {
        "name": _clip(name, 60),
        "planet": (ext.planet if ext and ext.planet else "somewhere beyond the charts"),
        "sex": (ext.sex if ext and ext.sex else "unspecified"),
        "species": (ext.species if ext and ext.species else "unknown"),
        "archetype": (ext.archetype if ext and ext.archetype else "wanderer"),
        "personality": personality or f"{name} keeps their true nature to themselves.",
        "backstory": ext.backstory if ext and ext.backstory else data.description.strip(),
        "speaking_style": (
            ext.speaking_style if ext and ext.speaking_style else "Speaks naturally, always in character."
        ),
        "greeting": greeting or f"Hello. I am {name}.",
        "image_prompt": ext.image_prompt if ext and ext.image_prompt else "",
        "tags": tags,
    }
    extras: dict[str, Any] = {}
    dumped = data.model_dump()
    for key in EXTRA_FIELDS:
        if key in dumped:
            extras[key] = dumped[key]
    for key, value in (data.model_extra or {}).items():
        extras[key] = value
    extras["extensions"] = {k: v for k, v in data.extensions.items() if k != "orrery"}
    if ext is None:
        # A foreign card's own wording exports better than Orrery's composed defaults: give it back as it came.
        extras.update(description=data.description, personality=data.personality, first_mes=data.first_mes)
    fields["card_extras"] = extras
    return fields
