"""Personas this process has recently answered as, so a turn need not read its character again."""

from __future__ import annotations

from uuid import UUID

from orrery_chat.domain import Persona
from orrery_chat.lru import Lru


class PersonaCache:
    """A bounded, least-recently-used map of character id → persona.

    What a prompt is built from never changes after a character is created; only its owner can (a guest's
    characters move to their account). A cached persona is therefore trusted only to grant access: a caller
    that finds it not visible to the user reads the character again, and a merge empties the cache.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._items: Lru[UUID, Persona] = Lru(capacity)

    def get(self, character_id: UUID) -> Persona | None:
        return self._items.get(character_id)

    def put(self, persona: Persona) -> None:
        self._items.put(persona.character_id, persona)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
