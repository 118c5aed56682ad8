"""The extraction prompt: the current dossier and the new turns, asking only for what is new."""

from __future__ import annotations

import json
from collections.abc import Sequence

from orrery_dossier.domain import TurnText, clip
from orrery_shared.events import DossierSnapshot
from orrery_shared.llm.messages import ChatMessage, system, user

SYSTEM_PROMPT = """You keep the dossier of a story that a user is developing in a chat with a character.
The dossier lists characters (name, description, relationships, character arc), themes, locations and plot points.

You receive the current dossier and the newest conversation turns. Report only information that is NEW in
these turns or that adds to what the dossier says:
- characters: for a character already in the dossier use exactly the name it has there, and give only new
  facts in description, relationships and character_arc (leave a field empty when nothing is new);
- themes, locations, plot_points: only items the dossier does not contain yet; plot points are short
  sentences in story order;
- title: a short working title if the dossier has none yet, otherwise null.
Use only what the turns state or clearly imply; do not invent. Ignore small talk. When the turns hold nothing
new for the story, return empty lists."""


def dossier_for_prompt(title: str, snapshot: DossierSnapshot, max_chars: int) -> str:
    """The dossier as JSON, shortened (texts cut, then lists) when it would exceed `max_chars`."""
    full = {"title": title or None, **snapshot.model_dump()}
    text = json.dumps(full, ensure_ascii=False)
    if len(text) <= max_chars:
        return text
    # Names matter most (the model must reuse them); long texts can be summarised by their start.
    compact = {
        "title": title or None,
        "characters": [
            {"name": c.name, "description": clip(c.description, 160), "character_arc": clip(c.character_arc, 80)}
            for c in snapshot.characters
        ],
        "themes": snapshot.themes,
        "locations": snapshot.locations,
        "plot_points": [clip(p, 120) for p in snapshot.plot_points[-60:]],
    }
    text = json.dumps(compact, ensure_ascii=False)
    if len(text) <= max_chars:
        return text
    names_only = {
        "title": title or None,
        "characters": [c.name for c in snapshot.characters],
        "locations": snapshot.locations[:200],
        "themes": snapshot.themes[:100],
    }
    return json.dumps(names_only, ensure_ascii=False)[:max_chars]


def format_turns(turns: Sequence[TurnText]) -> str:
    """The turns, numbered, as the model reads them."""
    blocks = []
    for number, turn in enumerate(turns, 1):
        blocks.append(f"[Turn {number}]\nUser: {turn.user_text}\nCharacter: {turn.assistant_text}")
    return "\n\n".join(blocks)


def extraction_messages(
    title: str, snapshot: DossierSnapshot, turns: Sequence[TurnText], max_dossier_chars: int
) -> list[ChatMessage]:
    """The messages of one extraction call."""
    return [
        system(SYSTEM_PROMPT),
        user(
            "Current dossier:\n"
            f"{dossier_for_prompt(title, snapshot, max_dossier_chars)}\n\n"
            f"New turns:\n{format_turns(turns)}\n\n"
            "Reply with the new information as JSON."
        ),
    ]
