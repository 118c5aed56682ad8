"""The roulette's rules: the trait catalogue, drawing fresh traits, the persona an LLM must write, characters.

Pure logic: no I/O, no clocks, randomness only through the `random.Random` handed in.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

# --- the trait catalogue ------------------------------------------------------------------------------

SEXES: tuple[str, ...] = (
    "female",
    "male",
    "non-binary",
    "agender",
    "genderfluid",
    "hermaphroditic",
    "sequentially hermaphroditic",
    "tri-gendered",
    "parthenogenetic",
    "hive-neuter",
)

SPECIES: tuple[str, ...] = (
    "cyborg",
    "android",
    "Martian",
    "Venusian",
    "Grey",
    "reptilian Saurian",
    "insectoid Mantid",
    "cephalopod",
    "crystalline Silicate",
    "plasma being",
    "fungal Mycelid",
    "sentient plant",
    "amphibian Batrachian",
    "avian Corvid",
    "felinoid",
    "lupine Canid",
    "gas-giant Nebulite",
    "deep-sea Abyssal",
    "gelatinous Ooze",
    "clockwork automaton",
    "shadow Umbral",
    "stone Lithoid",
    "arachnid",
    "star-born Solarian",
    "ice Cryon",
    "lava Magmoid",
    "moth-winged Lepidopteran",
    "hive drone",
    "ancient Elder",
    "hologram",
    "void walker",
    "coral Polypoid",
    "dragonkin",
)

ARCHETYPES: tuple[str, ...] = (
    "galactic emperor",
    "smuggler",
    "xenobotanist",
    "bounty hunter",
    "space pirate",
    "starship engineer",
    "interstellar diplomat",
    "mystic oracle",
    "rebel pilot",
    "nebula cartographer",
    "asteroid miner",
    "cosmic bard",
    "intergalactic chef",
    "rogue scientist",
    "starport bartender",
    "void priest",
    "exiled royal",
    "cyber-hacker",
    "archaeologist of dead worlds",
    "gladiator champion",
    "comet courier",
    "black-market merchant",
    "lighthouse keeper of the rim",
    "xenolinguist",
    "terraformer",
    "retired war hero",
    "zero-g dancer",
    "galactic detective",
    "con artist",
    "monastery hermit",
    "station medic",
    "quantum gambler",
    "star-whale herder",
    "time traveller",
    "holo-streamer",
)

TRAIT_KINDS = ("sex", "species", "archetype")
CATALOGUE: dict[str, tuple[str, ...]] = {"sex": SEXES, "species": SPECIES, "archetype": ARCHETYPES}


def _fold(value: str) -> str:
    return re.sub(r"[\s_-]+", " ", value).strip().casefold()


_BY_FOLDED: dict[str, dict[str, str]] = {
    kind: {_fold(value): value for value in values} for kind, values in CATALOGUE.items()
}


class UnknownTraitError(ValueError):
    """A pinned trait value that is not in the catalogue."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(f"unknown {kind} {value!r}: pick one of GET /characters/traits")
        self.kind = kind
        self.value = value


class NoFreshTraitsError(ValueError):
    """Every combination the pinned traits allow was used by the user's recent characters."""


def canonical_trait(kind: str, value: str) -> str:
    """The catalogue spelling of `value` (case, spaces, hyphens and underscores ignored); raises UnknownTraitError."""
    found = _BY_FOLDED[kind].get(_fold(value))
    if found is None:
        raise UnknownTraitError(kind, value)
    return found


@dataclass(frozen=True, order=True)
class Traits:
    """What the roulette draws: sex (or gender), species and archetype."""

    sex: str
    species: str
    archetype: str

    def describe(self) -> str:
        """e.g. 'female cyborg galactic emperor'."""
        return f"{self.sex} {self.species} {self.archetype}"

    def combination(self) -> tuple[str, str, str]:
        """The (sex, species, archetype) key "spin again" must not repeat, compared case-insensitively."""
        return (_fold(self.sex), _fold(self.species), _fold(self.archetype))


@dataclass(frozen=True)
class Pins:
    """Traits the user fixed before spinning, already in catalogue spelling; None means draw at random."""

    sex: str | None = None
    species: str | None = None
    archetype: str | None = None

    @classmethod
    def from_overrides(cls, sex: str | None, species: str | None, archetype: str | None) -> Pins:
        """Validate raw overrides against the catalogue (blank means unpinned); raises UnknownTraitError."""

        def pin(kind: str, value: str | None) -> str | None:
            return canonical_trait(kind, value) if value is not None and value.strip() else None

        return cls(pin("sex", sex), pin("species", species), pin("archetype", archetype))


def draw_traits(rng: random.Random, pins: Pins, recent: Collection[tuple[str, str, str]]) -> Traits:
    """Random traits honouring `pins` whose combination is not in `recent`; raises NoFreshTraitsError."""
    sexes = [pins.sex] if pins.sex else list(SEXES)
    species = [pins.species] if pins.species else list(SPECIES)
    archetypes = [pins.archetype] if pins.archetype else list(ARCHETYPES)
    # Rejection sampling is uniform and cheap while few combinations are taken, which is nearly always.
    for _ in range(64):
        traits = Traits(rng.choice(sexes), rng.choice(species), rng.choice(archetypes))
        if traits.combination() not in recent:
            return traits
    fresh = [
        Traits(s, p, a)
        for s, p, a in itertools.product(sexes, species, archetypes)
        if Traits(s, p, a).combination() not in recent
    ]
    if not fresh:
        raise NoFreshTraitsError(
            "every combination your pinned traits allow was used by one of your recent characters; unpin a trait"
        )
    return rng.choice(fresh)


def request_rng(seed: int | None, request_id: UUID) -> random.Random:
    """A generator per request: reproducible from (seed, request) when a seed is configured, else fresh."""
    if seed is None:
        return random.Random()
    return random.Random(f"{seed}:{request_id}")


# --- the persona the LLM writes -----------------------------------------------------------------------

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]


class PersonaDraft(BaseModel):
    """What the LLM must return for a new character (validated; lengths bounded)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=2, max_length=60, description="an invented, pronounceable alien name")
    planet: str = Field(min_length=2, max_length=80, description="the invented home world or station")
    personality: str = Field(min_length=20, max_length=1_200, description="temperament, quirks, values, fears")
    backstory: str = Field(min_length=40, max_length=3_000, description="where they come from and what they want")
    speaking_style: str = Field(min_length=10, max_length=600, description="how they talk: rhythm, idioms, tics")
    greeting: str = Field(
        min_length=5, max_length=600, description="their first message to the user, in character, one short paragraph"
    )
    image_prompt: str = Field(
        min_length=20, max_length=1_000, description="a vivid visual description for a head-and-shoulders portrait"
    )
    tags: list[Tag] = Field(min_length=1, max_length=8, description="a few lowercase keywords")

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: object) -> object:
        # Postgres text holds neither NUL nor lone surrogates; a model emitting one should not fail the spin.
        if isinstance(value, str):
            return _storable_text(value)
        if isinstance(value, list):
            return [_storable_text(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("tags")
    @classmethod
    def _distinct_lowercase(cls, tags: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for tag in tags:
            seen.setdefault(tag.lower(), None)
        return list(seen)


def _storable_text(text: str) -> str:
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


PERSONA_SYSTEM_PROMPT = (
    "You are the character designer of Orrery, a retro-futuristic science-fiction chat roulette. "
    "Invent one brand-new alien character the user will chat with. Make them vivid, specific and playful, "
    "never generic; keep everything suitable for a general audience. Write the greeting as the character "
    "speaking directly to the user. The image prompt describes a head-and-shoulders portrait in a retro "
    "science-fiction illustration style and never contains text or letters."
)


def persona_messages(traits: Traits, avoid_names: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat messages asking the LLM for a persona with these traits."""
    lines = [
        f"Sex or gender: {traits.sex}",
        f"Species: {traits.species}",
        f"Archetype: {traits.archetype}",
    ]
    if avoid_names:
        lines.append("Do not reuse any of these names: " + ", ".join(avoid_names[:20]))
    return [
        {"role": "system", "content": PERSONA_SYSTEM_PROMPT},
        {"role": "user", "content": "Create the character.\n" + "\n".join(lines)},
    ]


def image_prompt_for(traits: Traits, persona_image_prompt: str) -> str:
    """The prompt sent to image providers: the canonical traits first, then the LLM's description."""
    return (
        f"Head-and-shoulders portrait of a {traits.describe()}, retro-futuristic science-fiction illustration, "
        f"no text. {persona_image_prompt}"
    )


# --- characters -------------------------------------------------------------------------------------


class Source(StrEnum):
    """How a character came to exist."""

    GENERATED = "generated"
    PRESET = "preset"
    IMPORTED = "imported"


PORTRAIT_PATH = "/api/characters/{character_id}/portrait"
CARD_PATH = "/api/characters/{character_id}/card"
PRESET_NAMESPACE = uuid.UUID("6f1c9a52-3f0e-5b8e-9a57-0c1d2e3f4a5b")


def preset_id(name: str) -> UUID:
    """A preset's id: stable across restarts and replicas, derived from its name."""
    return uuid.uuid5(PRESET_NAMESPACE, _fold(name))


def portrait_url(character_id: UUID) -> str:
    """Where the gateway serves a character's portrait."""
    return PORTRAIT_PATH.format(character_id=character_id)


def portrait_seed(character_id: UUID) -> int:
    """The procedural portrait's seed: the same character always gets the same picture."""
    return int.from_bytes(hashlib.sha256(character_id.bytes).digest()[:8], "big")


@dataclass(frozen=True)
class Portrait:
    """An image stored with its character; `png` is a PNG rendition of a raster `data` that is not PNG."""

    data: bytes
    content_type: str
    provider: str
    model: str | None = None
    png: bytes | None = None
    fell_back_from: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        """Hex digest of the served bytes (the strong ETag)."""
        return hashlib.sha256(self.data).hexdigest()

    def png_bytes(self) -> bytes | None:
        """The PNG version for character cards; None for a procedural SVG, whose PNG is drawn on demand."""
        return self.data if self.content_type == "image/png" else self.png


@dataclass(frozen=True)
class Character:
    """A character with its full persona."""

    id: UUID
    owner_user_id: UUID | None
    source: Source
    name: str
    planet: str
    traits: Traits
    personality: str
    backstory: str
    speaking_style: str
    greeting: str
    image_prompt: str
    tags: tuple[str, ...]
    portrait_provider: str
    request_id: UUID | None = None
    card_extras: dict[str, object] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def portrait_url(self) -> str:
        """Where the gateway serves the portrait."""
        return portrait_url(self.id)

    def visible_to(self, user_id: UUID | None) -> bool:
        """Presets are everyone's; other characters only their owner's."""
        return self.owner_user_id is None or self.owner_user_id == user_id


def character_from_persona(
    character_id: UUID,
    owner: UUID,
    request_id: UUID,
    traits: Traits,
    persona: PersonaDraft,
    portrait_provider: str,
) -> Character:
    """A freshly generated character."""
    return Character(
        id=character_id,
        owner_user_id=owner,
        source=Source.GENERATED,
        name=persona.name,
        planet=persona.planet,
        traits=traits,
        personality=persona.personality,
        backstory=persona.backstory,
        speaking_style=persona.speaking_style,
        greeting=persona.greeting,
        image_prompt=persona.image_prompt,
        tags=tuple(persona.tags),
        portrait_provider=portrait_provider,
        request_id=request_id,
    )


def recent_names(characters: Iterable[Character]) -> list[str]:
    """Names the next persona should not reuse."""
    return [c.name for c in characters]
