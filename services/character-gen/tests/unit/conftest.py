"""In-memory fakes of the use cases' ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from orrery_character_gen.domain import Character, PersonaDraft, Portrait, Traits
from orrery_character_gen.handlers import (
    EventFactory,
    PersonaFailedError,
    PresetChange,
    RecentCharacter,
    StoredPortrait,
)
from orrery_character_gen.procedural import MODEL, PROVIDER, SVG_TYPE, paint
from orrery_shared.events import CharacterFailed, Event, UserMerged


@dataclass
class FakeStore:
    characters: dict[UUID, Character] = field(default_factory=dict)
    portraits: dict[UUID, Portrait] = field(default_factory=dict)
    outcomes: dict[UUID, str] = field(default_factory=dict)
    merges: dict[UUID, UUID] = field(default_factory=dict)
    inbox: set[UUID] = field(default_factory=set)
    preset_hashes: dict[UUID, str] = field(default_factory=dict)
    published: list[Event] = field(default_factory=list)
    clock: datetime = datetime(2030, 1, 1, tzinfo=UTC)

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def _owner(self, user: UUID) -> UUID:
        while user in self.merges:
            user = self.merges[user]
        return user

    async def spin_handled(self, request_id: UUID) -> bool:
        return request_id in self.outcomes

    async def recent(self, user_id: UUID, limit: int) -> list[RecentCharacter]:
        mine = [c for c in self.characters.values() if c.owner_user_id == user_id]
        mine.sort(key=lambda c: c.created_at or self.clock, reverse=True)
        return [RecentCharacter(c.traits, c.name) for c in mine[:limit]]

    async def traits_of(self, character_ids: Sequence[UUID], user_id: UUID) -> list[Traits]:
        found = (self.characters.get(i) for i in character_ids)
        return [c.traits for c in found if c is not None and c.visible_to(user_id)]

    async def save_generated(self, character: Character, portrait: Portrait, created: EventFactory) -> Character | None:
        assert character.request_id is not None and character.owner_user_id is not None
        if character.request_id in self.outcomes:
            return None
        self.outcomes[character.request_id] = "created"
        return self._store(character, portrait, created)

    async def save_failure(self, event: CharacterFailed) -> bool:
        if event.request_id in self.outcomes:
            return False
        self.outcomes[event.request_id] = "failed"
        self.published.append(event)
        return True

    async def save_imported(self, character: Character, portrait: Portrait, created: EventFactory) -> Character:
        return self._store(character, portrait, created)

    async def save_preset(
        self, character: Character, portrait: Portrait, content_hash: str, created: EventFactory
    ) -> PresetChange:
        previous = self.preset_hashes.get(character.id)
        if previous == content_hash:
            return PresetChange.UNCHANGED
        self.preset_hashes[character.id] = content_hash
        self._store(character, portrait, created)
        return PresetChange.INSERTED if previous is None else PresetChange.UPDATED

    def _store(self, character: Character, portrait: Portrait, created: EventFactory) -> Character:
        owner = self._owner(character.owner_user_id) if character.owner_user_id else None
        final = replace(character, owner_user_id=owner, created_at=self._tick())
        self.characters[final.id] = final
        self.portraits[final.id] = portrait
        self.published.append(created(final))
        return final

    async def reown(self, event: UserMerged, consumer: str) -> int | None:
        if event.event_id in self.inbox:
            return None
        self.inbox.add(event.event_id)
        self.merges[event.from_user_id] = event.to_user_id
        moved = 0
        for key, c in list(self.characters.items()):
            if c.owner_user_id == event.from_user_id:
                self.characters[key] = replace(c, owner_user_id=event.to_user_id)
                moved += 1
        return moved

    async def get(self, character_id: UUID) -> Character | None:
        return self.characters.get(character_id)

    async def owned(self, user_id: UUID, limit: int, offset: int) -> tuple[list[Character], int]:
        mine = sorted(
            (c for c in self.characters.values() if c.owner_user_id == user_id),
            key=lambda c: c.created_at or self.clock,
            reverse=True,
        )
        return mine[offset : offset + limit], len(mine)

    async def presets(self) -> list[Character]:
        return sorted((c for c in self.characters.values() if c.owner_user_id is None), key=lambda c: c.name)

    async def portrait(self, character_id: UUID) -> StoredPortrait | None:
        p = self.portraits.get(character_id)
        c = self.characters.get(character_id)
        if p is None or c is None:
            return None
        return StoredPortrait(c.owner_user_id, p.content_type, p.data, p.sha256, p.png)


def persona_for(traits: Traits, n: int = 0) -> PersonaDraft:
    return PersonaDraft(
        name=f"Zorb {traits.species.split()[-1]} {n}",
        planet="Glimmer Prime",
        personality="Curious, kind and a little bit theatrical about everything.",
        backstory="Raised among the rings of Glimmer Prime, they left to see what lies beyond the charts.",
        speaking_style="Short bright sentences and many questions.",
        greeting="Greetings, traveller! Care to share a comet?",
        image_prompt="A friendly alien under a violet sky, retro illustration.",
        tags=["Friendly", "curious", "friendly"],
    )


@dataclass
class FakeWriter:
    failures: list[PersonaFailedError] = field(default_factory=list)
    calls: list[tuple[Traits, list[str]]] = field(default_factory=list)

    async def write(self, traits: Traits, avoid_names: Sequence[str]) -> PersonaDraft:
        self.calls.append((traits, list(avoid_names)))
        if self.failures:
            raise self.failures.pop(0)
        return persona_for(traits, len(self.calls))


class FakePainter:
    async def paint(self, traits: Traits, image_prompt: str, seed: int) -> Portrait:
        return await self.procedural(traits, seed)

    async def procedural(self, traits: Traits, seed: int) -> Portrait:
        return Portrait(data=paint(traits, seed, png_size=8).svg, content_type=SVG_TYPE, provider=PROVIDER, model=MODEL)

    async def procedural_png(self, traits: Traits, seed: int) -> bytes:
        return paint(traits, seed, png_size=64).png


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
def painter() -> FakePainter:
    return FakePainter()
