"""Prompt building and memory folding, with a word-count tokenizer so the numbers are easy to follow."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from orrery_chat.domain import (
    MESSAGE_OVERHEAD,
    Memory,
    MemoryPolicy,
    PathContext,
    Persona,
    StoredMessage,
    build_prompt,
    messages_to_fold,
    recent_window,
    title_from,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PERSONA = Persona(uuid4(), "Zed", "Vega", "male", "Vorth", "smuggler", "wry", "ran silk", "clipped", "Ahoy.")


def words(text: str) -> int:
    return len(text.split())


def history(*texts: str) -> list[StoredMessage]:
    return [
        StoredMessage(uuid4(), seq, "user" if seq % 2 else "assistant", text, "complete", NOW)
        for seq, text in enumerate(texts, start=1)
    ]


def test_the_window_keeps_the_newest_messages_that_fit_the_budget() -> None:
    messages = history("one two three", "four five", "six")
    window = recent_window(messages, budget=2 + 1 + 2 * MESSAGE_OVERHEAD, count=words)
    assert [m.content for m in window] == ["four five", "six"]


def test_the_newest_message_is_kept_even_when_it_alone_exceeds_the_budget() -> None:
    messages = history("a very long message indeed")
    assert recent_window(messages, budget=1, count=words) == messages


def test_summarised_messages_never_reach_the_prompt_but_the_summary_does() -> None:
    messages = history("my ship is the Kestrel", "nice", "what is my ship?")
    context = PathContext(Memory("The user flies the Kestrel.", messages[1].message_id), messages[2:])
    prompt = build_prompt(PERSONA, context, MemoryPolicy(), words)
    assert [m["content"] for m in prompt.messages[1:]] == ["what is my ship?"]
    assert "The user flies the Kestrel." in prompt.messages[0]["content"]
    assert "Zed" in prompt.messages[0]["content"]


def test_nothing_is_folded_while_the_window_fits() -> None:
    policy = MemoryPolicy(window_tokens=100)
    assert messages_to_fold(history("a b", "c d"), policy, words) == []


def test_an_overflowing_window_folds_its_oldest_messages_down_to_the_fold_share() -> None:
    policy = MemoryPolicy(window_tokens=3 * (2 + MESSAGE_OVERHEAD), fold_to_share=0.5)
    messages = history("a b", "c d", "e f", "g h")
    folded = messages_to_fold(messages, policy, words)
    assert [m.content for m in folded] == ["a b", "c d", "e f"]


def test_a_continued_message_ends_the_prompt_with_the_nudge_to_go_on_from_it() -> None:
    messages = history("tell me a story", "Once upon a time")
    prompt = build_prompt(PERSONA, PathContext(Memory(), messages), MemoryPolicy(), words, continuing=True)
    assert prompt.messages[-2] == {"role": "assistant", "content": "Once upon a time"}
    assert prompt.messages[-1]["role"] == "system" and "Continue" in prompt.messages[-1]["content"]


def test_titles_come_from_the_first_message_shortened_on_a_word() -> None:
    assert title_from("  Hello   there ") == "Hello there"
    long = "word " * 30
    title = title_from(long)
    assert title.endswith("…") and len(title) <= 61 and " wor…" not in title
    assert title_from("   ") == "New conversation"
