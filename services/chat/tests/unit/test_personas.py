"""The in-process persona cache: bounded, least recently used first out."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

from orrery_chat.domain import Persona
from orrery_chat.personas import PersonaCache


def persona(name: str) -> Persona:
    return Persona(uuid4(), name, "Vega", "male", "Vorth", "smuggler", "wry", "ran silk", "clipped", "Ahoy.")


def test_the_least_recently_used_persona_leaves_first_when_full() -> None:
    cache = PersonaCache(capacity=2)
    a, b, c = persona("A"), persona("B"), persona("C")
    cache.put(a)
    cache.put(b)
    assert cache.get(a.character_id) == a  # a is now the most recently used
    cache.put(c)
    assert len(cache) == 2
    assert cache.get(b.character_id) is None
    assert cache.get(a.character_id) == a and cache.get(c.character_id) == c


def test_a_put_replaces_and_clear_empties() -> None:
    cache = PersonaCache()
    a = persona("A")
    cache.put(a)
    moved = replace(a, owner_user_id=uuid4())
    cache.put(moved)
    assert cache.get(a.character_id) == moved and len(cache) == 1
    cache.clear()
    assert cache.get(a.character_id) is None
