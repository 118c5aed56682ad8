"""Use cases: spinning a character, re-owning a guest's characters, presets, card import/export, reads.

They depend on the domain and on small protocols (a store, a persona writer, a portrait painter) that the
composition root fills with the real Postgres, LLM and image adapters, and unit tests with fakes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from uuid import UUID, uuid4

from orrery_character_gen import cards, metrics
from orrery_character_gen.cards import CardError
from orrery_character_gen.domain import (
    Character,
    NoFreshTraitsError,
    PersonaDraft,
    Pins,
    Portrait,
    Source,
    Traits,
    UnknownTraitError,
    character_from_persona,
    draw_traits,
    portrait_seed,
    preset_id,
    request_rng,
)
from orrery_character_gen.imaging import ImageRejectedError, to_png
from orrery_shared.events import (
    CharacterCreated,
    CharacterFailed,
    CharacterRequested,
    Event,
    UserErased,
    UserMerged,
)

log = logging.getLogger(__name__)

EventFactory = Callable[[Character], Event]


# --- ports --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecentCharacter:
    """What "spin again" needs to know about one of the user's recent characters."""

    traits: Traits
    name: str


@dataclass(frozen=True)
class StoredPortrait:
    """A stored portrait with who may see it."""

    owner_user_id: UUID | None
    content_type: str
    data: bytes
    sha256: str
    png: bytes | None

    def png_bytes(self) -> bytes | None:
        """The PNG rendition (the portrait itself when it is a PNG); None for a procedural SVG, drawn on demand."""
        return self.data if self.content_type == "image/png" else self.png

    def visible_to(self, user_id: UUID | None) -> bool:
        """Presets are everyone's; other portraits only their owner's."""
        return self.owner_user_id is None or self.owner_user_id == user_id


class PresetChange(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class CharacterStore(Protocol):
    """Where characters, portraits and spin outcomes live; every save commits its event with it."""

    async def spin_handled(self, request_id: UUID) -> bool:
        """Whether a spin already has an outcome (created or failed)."""
        ...

    async def recent(self, user_id: UUID, limit: int) -> list[RecentCharacter]:
        """The user's `limit` newest characters."""
        ...

    async def traits_of(self, character_ids: Sequence[UUID], user_id: UUID) -> list[Traits]:
        """Traits of those of `character_ids` the user may see."""
        ...

    async def save_generated(self, character: Character, portrait: Portrait, created: EventFactory) -> Character | None:
        """Store a spin's character and publish its event; None when the spin already had an outcome."""
        ...

    async def save_failure(self, event: CharacterFailed) -> bool:
        """Record a failed spin and publish its event; False when the spin already had an outcome."""
        ...

    async def save_imported(self, character: Character, portrait: Portrait, created: EventFactory) -> Character:
        """Store an imported character (owner resolved through merges) and publish its event."""
        ...

    async def save_preset(
        self, character: Character, portrait: Portrait, content_hash: str, created: EventFactory
    ) -> PresetChange:
        """Insert or refresh a preset, publishing its event only when it is new or its card changed."""
        ...

    async def reown(self, event: UserMerged, consumer: str) -> int | None:
        """Move the guest's characters to the account; None when this event was already applied."""
        ...

    async def erase(self, event: UserErased, consumer: str) -> int | None:
        """Delete everything of the erased users; None when this event was already applied."""
        ...

    async def get(self, character_id: UUID) -> Character | None:
        """A character by id, whoever owns it."""
        ...

    async def owned(self, user_id: UUID, limit: int, offset: int) -> tuple[list[Character], int]:
        """A page of the user's characters, newest first, and how many they have in all."""
        ...

    async def presets(self) -> list[Character]:
        """Every preset, by name."""
        ...

    async def portrait(self, character_id: UUID) -> StoredPortrait | None:
        """A character's portrait."""
        ...


class PersonaFailedError(Exception):
    """The persona could not be written; `retryable` says whether another spin may succeed."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class PersonaWriter(Protocol):
    async def write(self, traits: Traits, avoid_names: Sequence[str]) -> PersonaDraft:
        """A persona for `traits`; raises PersonaFailedError."""
        ...


class Painter(Protocol):
    async def paint(self, traits: Traits, image_prompt: str, seed: int) -> Portrait:
        """A portrait from the first provider that succeeds (the procedural one never fails)."""
        ...

    async def procedural(self, traits: Traits, seed: int) -> Portrait:
        """The procedural portrait of `traits` (SVG)."""
        ...

    async def procedural_png(self, traits: Traits, seed: int) -> bytes:
        """The same procedural portrait as PNG."""
        ...


class NotFoundError(LookupError):
    """No such character for this caller (it may exist and belong to someone else)."""


# --- events -------------------------------------------------------------------------------------------------


def created_event(character: Character, correlation_id: str | None = None) -> CharacterCreated:
    """The character.created.v1 of a stored character."""
    t = character.traits
    return CharacterCreated(
        correlation_id=correlation_id,
        request_id=character.request_id,
        character_id=character.id,
        owner_user_id=character.owner_user_id,
        name=character.name,
        planet=character.planet,
        sex=t.sex,
        species=t.species,
        archetype=t.archetype,
        personality=character.personality,
        backstory=character.backstory,
        speaking_style=character.speaking_style,
        greeting=character.greeting,
        alternate_greetings=_alternate_greetings(character),
        tags=list(character.tags),
        portrait_url=character.portrait_url,
        portrait_provider=character.portrait_provider,
    )


def _alternate_greetings(character: Character) -> list[str]:
    """An imported card's other first messages (its greeting may have been taken from them)."""
    kept = character.card_extras.get("alternate_greetings")
    texts = [g.strip() for g in kept if isinstance(g, str) and g.strip()] if isinstance(kept, list) else []
    return [g for g in dict.fromkeys(texts) if g != character.greeting.strip()]


# --- spinning -----------------------------------------------------------------------------------------------


class SpinHandler:
    """character.requested.v1 → a stored character and character.created.v1, or character.failed.v1."""

    def __init__(
        self,
        store: CharacterStore,
        writer: PersonaWriter,
        painter: Painter,
        *,
        recent_window: int = 20,
        seed: int | None = None,
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        self.store = store
        self.writer = writer
        self.painter = painter
        self.recent_window = recent_window
        self.seed = seed
        self.new_id = new_id

    async def __call__(self, event: CharacterRequested) -> None:
        """Handle one spin; a spin that already has an outcome publishes nothing new."""
        started = time.perf_counter()
        if await self.store.spin_handled(event.request_id):
            metrics.SPINS.labels("duplicate").inc()
            log.info("spin already handled", extra={"request_id": str(event.request_id)})
            return
        try:
            pins = Pins.from_overrides(event.traits.sex, event.traits.species, event.traits.archetype)
            recent = await self.store.recent(event.user_id, self.recent_window) if self.recent_window else []
            taken = {r.traits.combination() for r in recent}
            if event.exclude_character_ids:
                excluded = await self.store.traits_of(event.exclude_character_ids[:100], event.user_id)
                taken |= {t.combination() for t in excluded}
            traits = draw_traits(request_rng(self.seed, event.request_id), pins, taken)
            persona = await self.writer.write(traits, [r.name for r in recent])
        except (UnknownTraitError, NoFreshTraitsError) as error:
            await self._fail(event, str(error), retryable=False)
            return
        except PersonaFailedError as error:
            await self._fail(event, error.reason, retryable=error.retryable)
            return
        character_id = self.new_id()
        portrait = await self.painter.paint(traits, persona.image_prompt, portrait_seed(character_id))
        character = character_from_persona(
            character_id, event.user_id, event.request_id, traits, persona, portrait.provider
        )
        stored = await self.store.save_generated(
            character, portrait, lambda final: created_event(final, event.correlation_id)
        )
        if stored is None:
            metrics.SPINS.labels("duplicate").inc()
            return
        metrics.SPINS.labels("created").inc()
        metrics.PORTRAITS.labels(portrait.provider).inc()
        metrics.SPIN_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "character created",
            extra={"request_id": str(event.request_id), "character_id": str(character_id), "traits": traits.describe()},
        )

    async def _fail(self, event: CharacterRequested, reason: str, *, retryable: bool) -> None:
        failed = CharacterFailed(
            correlation_id=event.correlation_id,
            request_id=event.request_id,
            user_id=event.user_id,
            reason=reason,
            retryable=retryable,
        )
        if await self.store.save_failure(failed):
            metrics.SPINS.labels("failed").inc()
            log.warning(
                "spin failed", extra={"request_id": str(event.request_id), "reason": reason, "retryable": retryable}
            )


# --- merging ------------------------------------------------------------------------------------------------


class MergeHandler:
    """auth.user-merged.v1 → the guest's characters belong to the account (once per event)."""

    def __init__(self, store: CharacterStore, consumer: str) -> None:
        self.store = store
        self.consumer = consumer

    async def __call__(self, event: UserMerged) -> None:
        """Re-own the guest's characters."""
        if event.from_user_id == event.to_user_id:
            return
        moved = await self.store.reown(event, self.consumer)
        if moved is not None:
            log.info(
                "characters re-owned",
                extra={"from": str(event.from_user_id), "to": str(event.to_user_id), "count": moved},
            )


class EraseHandler:
    """auth.user-erased.v1 → the user's characters, portraits and spins are deleted (once per event)."""

    def __init__(self, store: CharacterStore, consumer: str) -> None:
        self.store = store
        self.consumer = consumer

    async def __call__(self, event: UserErased) -> None:
        """Erase the user's characters."""
        erased = await self.store.erase(event, self.consumer)
        if erased is not None:
            log.info("user's characters erased", extra={"count": erased})


# --- presets ------------------------------------------------------------------------------------------------


def character_from_card(
    character_id: UUID, owner: UUID | None, source: Source, fields: dict[str, object], provider: str
) -> Character:
    """A character from the fields `cards.imported_fields` read from a card."""
    tags = fields["tags"]
    extras = fields["card_extras"]
    return Character(
        id=character_id,
        owner_user_id=owner,
        source=source,
        name=str(fields["name"]),
        planet=str(fields["planet"]),
        traits=Traits(str(fields["sex"]), str(fields["species"]), str(fields["archetype"])),
        personality=str(fields["personality"]),
        backstory=str(fields["backstory"]),
        speaking_style=str(fields["speaking_style"]),
        greeting=str(fields["greeting"]),
        image_prompt=str(fields["image_prompt"]),
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        portrait_provider=provider,
        card_extras=dict(extras) if isinstance(extras, dict) else {},
    )


async def load_presets(store: CharacterStore, painter: Painter, folder: Path) -> dict[str, PresetChange]:
    """Load every Character Card V2 JSON file of `folder` as a preset (published once, again only if changed)."""
    outcome: dict[str, PresetChange] = {}
    files = await asyncio.to_thread(lambda: [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.json"))])
    for filename, raw in files:
        try:
            card = cards.parse_card(raw)
            fields = cards.imported_fields(card)
        except CardError as error:
            log.error("preset card rejected", extra={"file": filename, "error": error.message})
            continue
        character_id = preset_id(str(fields["name"]))
        character = character_from_card(character_id, None, Source.PRESET, fields, "procedural")
        portrait = await painter.procedural(character.traits, portrait_seed(character_id))
        content_hash = hashlib.sha256(raw).hexdigest()
        outcome[character.name] = await store.save_preset(character, portrait, content_hash, created_event)
    log.info("presets loaded", extra={"presets": {k: v.value for k, v in outcome.items()}})
    return outcome


# --- card import ----------------------------------------------------------------------------------------------


class CardImporter:
    """POST /characters/import: a JSON or PNG card becomes a character of the caller."""

    def __init__(
        self,
        store: CharacterStore,
        painter: Painter,
        *,
        max_pixels: int,
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        self.store = store
        self.painter = painter
        self.max_pixels = max_pixels
        self.new_id = new_id

    async def __call__(self, user_id: UUID, body: bytes, correlation_id: str | None = None) -> Character:
        """Validate and store the card; raises CardError (with an HTTP status) for unacceptable input."""
        try:
            character = await self._import(user_id, body, correlation_id)
        except CardError:
            metrics.IMPORTS.labels("rejected").inc()
            raise
        metrics.IMPORTS.labels("created").inc()
        return character

    async def _import(self, user_id: UUID, body: bytes, correlation_id: str | None) -> Character:
        if not body.strip():
            raise CardError("empty_body", "send a character card as JSON or PNG", 400)
        is_png = body.startswith(cards.PNG_SIGNATURE)
        card = cards.parse_card(cards.card_text_from_png(body) if is_png else body)
        fields = cards.imported_fields(card)
        character_id = self.new_id()
        if is_png:
            try:
                png = await asyncio.to_thread(to_png, cards.strip_card_chunks(body), self.max_pixels)
            except ImageRejectedError as error:
                raise CardError("invalid_png", str(error), 400) from None
            portrait = Portrait(data=png, content_type="image/png", provider="imported")
        else:
            traits = Traits(str(fields["sex"]), str(fields["species"]), str(fields["archetype"]))
            portrait = await self.painter.procedural(traits, portrait_seed(character_id))
        character = character_from_card(character_id, user_id, Source.IMPORTED, fields, portrait.provider)
        return await self.store.save_imported(character, portrait, lambda final: created_event(final, correlation_id))


# --- reads ----------------------------------------------------------------------------------------------------


class CharacterQueries:
    """Read side, scoped by caller: another user's character is indistinguishable from a missing one."""

    def __init__(self, store: CharacterStore, painter: Painter) -> None:
        self.store = store
        self.painter = painter

    async def character(self, user_id: UUID | None, character_id: UUID) -> Character:
        """A character the caller may see; raises NotFoundError."""
        character = await self.store.get(character_id)
        if character is None or not character.visible_to(user_id):
            raise NotFoundError(character_id)
        return character

    async def portrait(self, user_id: UUID | None, character_id: UUID) -> StoredPortrait:
        """The portrait of a character the caller may see; raises NotFoundError."""
        portrait = await self.store.portrait(character_id)
        if portrait is None or not portrait.visible_to(user_id):
            raise NotFoundError(character_id)
        return portrait

    async def page(
        self, user_id: UUID, limit: int, offset: int, with_presets: bool
    ) -> tuple[list[Character], int, list[Character] | None]:
        """The caller's characters (newest first), their total, and the presets when asked for."""
        owned, total = await self.store.owned(user_id, limit, offset)
        return owned, total, (await self.store.presets() if with_presets else None)

    async def card(self, user_id: UUID | None, character_id: UUID) -> bytes:
        """The character's Character Card V2 as JSON."""
        return cards.card_json(await self.character(user_id, character_id))

    async def card_png(self, user_id: UUID | None, character_id: UUID) -> bytes:
        """The portrait as PNG carrying the card in its `chara` chunk."""
        character = await self.character(user_id, character_id)
        portrait = await self.portrait(user_id, character_id)
        png = portrait.png_bytes()
        if png is None:
            png = await self.painter.procedural_png(character.traits, portrait_seed(character.id))
        return cards.embed_card(png, cards.card_json(character))
