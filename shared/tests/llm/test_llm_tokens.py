"""The offline token estimate."""

from __future__ import annotations

import pytest

from orrery_shared.llm.tokens import estimate_message_tokens, estimate_tokens, split_tokens

SAMPLES = [
    "",
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world!",
    "antidisestablishmentarianism",
    "Call me at 0123456789 before 18:30.",
    '{"name": "Mira", "age": 31, "traits": ["curious", "stubborn"]}',
    "日本語のテキストです",
    "  def f(x):\n        return x  # indented\n\n",
    "naïve café — déjà vu ¿qué? 🌊🌊",
    "don't you're we'll I'd",
    "snake_case_identifier and kebab-case-word",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_split_tokens_rejoins_to_the_text_and_matches_the_estimate(text: str) -> None:
    pieces = split_tokens(text)
    assert "".join(pieces) == text
    assert all(pieces)
    assert len(pieces) == estimate_tokens(text)


def test_common_english_costs_one_token_per_word_and_punctuation() -> None:
    assert estimate_tokens("The quick brown fox jumps over the lazy dog.") == 10
    assert estimate_tokens("Hello, world!") == 4


def test_long_words_numbers_and_cjk_cost_more() -> None:
    assert estimate_tokens("antidisestablishmentarianism") == 6
    assert estimate_tokens("1234567890") == 4
    assert estimate_tokens("日本語") == 3


def test_prose_lands_between_four_and_six_characters_per_token() -> None:
    prose = (
        "The lighthouse keeper climbed the spiral stairs every evening, counting the steps aloud "
        "while the wind rattled the windows. Nobody in the village remembered when she had arrived, "
        "only that the lamp had never once gone dark since."
    )
    ratio = len(prose) / estimate_tokens(prose)
    assert 4.0 <= ratio <= 5.5


def test_messages_add_the_chat_format_overhead() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    assert estimate_message_tokens(messages) == 3 + (4 + 3) + (4 + 2)
