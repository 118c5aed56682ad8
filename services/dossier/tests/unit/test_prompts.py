"""What the extraction model is shown."""

from __future__ import annotations

import json
from uuid import uuid4

from orrery_dossier.domain import TurnText
from orrery_dossier.prompts import dossier_for_prompt, extraction_messages
from orrery_shared.events import DossierCharacter, DossierSnapshot


def test_the_prompt_holds_the_current_dossier_and_every_turn() -> None:
    snapshot = DossierSnapshot(characters=[DossierCharacter(name="Mara", description="A smuggler.")])
    turns = [TurnText(1, uuid4(), "Her sister is Lena.", "Indeed."), TurnText(2, uuid4(), "Lena lies.", "Oh?")]
    messages = extraction_messages("The Titan Run", snapshot, turns, 16_000)
    assert messages[0]["role"] == "system" and "only information that is NEW" in messages[0]["content"]
    prompt = messages[1]["content"]
    assert '"name": "Mara"' in prompt and "The Titan Run" in prompt
    assert "[Turn 1]\nUser: Her sister is Lena.\nCharacter: Indeed." in prompt and "[Turn 2]" in prompt


def test_a_large_dossier_is_shortened_but_keeps_every_name() -> None:
    characters = [DossierCharacter(name=f"Person {i}", description="word " * 700) for i in range(40)]
    snapshot = DossierSnapshot(characters=characters, themes=["Trust"], plot_points=["p " * 400] * 20)
    text = dossier_for_prompt("", snapshot, 16_000)
    assert len(text) <= 16_000
    names = [c["name"] for c in json.loads(text)["characters"]]
    assert names == [f"Person {i}" for i in range(40)]


def test_a_huge_dossier_falls_back_to_names_within_the_budget() -> None:
    characters = [DossierCharacter(name=f"Person {i}", description="word " * 700) for i in range(500)]
    text = dossier_for_prompt("", DossierSnapshot(characters=characters), 16_000)
    assert len(text) <= 16_000
    assert "Person 0" in text and "word word" not in text
