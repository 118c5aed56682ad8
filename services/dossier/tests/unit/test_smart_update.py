"""Which turns are worth an extraction, and when a project's waiting turns are extracted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from orrery_dossier.domain import (
    Pending,
    SchedulePolicy,
    TurnText,
    assess_turn,
    is_trivial,
    proper_nouns,
    retry_delay,
    select_batch,
    story_statements,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "ok",
        "lol",
        "LOL!!",
        "hahaha 😂",
        "hi there!",
        "hello :)",
        "👍🔥",
        "thanks, that was great",
        "tell me more",
        "k",
        "",
    ],
)
def test_chit_chat_greetings_and_emojis_are_trivial(text: str) -> None:
    assert is_trivial(text)
    assert assess_turn(text, "A long reply naming Zorblax of Kepler.", []).trivial


@pytest.mark.parametrize(
    "text",
    [
        "My protagonist is Mara, a smuggler who grew up on Titan.",
        "Her sister betrayed her during the war.",
        "What if Oberon is secretly her father?",
    ],
)
def test_story_statements_are_not_trivial(text: str) -> None:
    assert not is_trivial(text)


def test_a_story_statement_with_new_names_scores_far_above_small_talk() -> None:
    story = assess_turn("My protagonist is Mara, a smuggler who grew up on Titan.", "", [])
    question = assess_turn("Can you describe it again?", "", [])
    assert {"mara", "titan"} <= story.new_terms
    assert "story:framing" in story.reasons and "story:placing" in story.reasons
    assert story.score >= 12
    assert question.score < 1


def test_names_the_dossier_already_knows_are_not_news() -> None:
    fresh = assess_turn("Mara flies to Titan again.", "", [])
    known = assess_turn("Mara flies to Titan again.", "", ["mara", "titan"])
    assert known.new_terms == frozenset()
    assert known.score < fresh.score


def test_names_introduced_by_the_reply_count_for_less_than_the_users() -> None:
    by_user = assess_turn("Describe the city of Vantor for me", "It is quiet.", [])
    by_reply = assess_turn("Describe the city for me", "The city of Vantor is quiet.", [])
    assert "vantor" in by_user.new_terms and "vantor" in by_reply.new_terms
    assert 0 < by_reply.score < by_user.score


def test_capitalised_sentence_starters_and_days_are_not_names() -> None:
    assert proper_nouns("Suddenly it rained. Then we left on Monday. I was there.") == set()
    assert proper_nouns("Zorg lives on Kepler with his friend Ana.") == {"zorg", "kepler", "ana"}


def test_story_statements_are_recognised_by_kind() -> None:
    assert set(story_statements("The villain is called Oberon and he rules over the city.")) >= {"framing", "naming"}
    assert story_statements("that sounds fun") == []


def test_a_kept_turn_needs_a_minimum_score() -> None:
    policy = SchedulePolicy(min_turn_score=1.0)
    assert policy.keeps(assess_turn("My hero was born on Mars.", "", []))
    assert not policy.keeps(assess_turn("what happened next?", "", []))
    assert not policy.keeps(assess_turn("lol", "", []))


def pending(count: int, score: float, chars: int = 100, age_seconds: float = 0) -> Pending:
    return Pending(count, score, chars, NOW - timedelta(seconds=age_seconds))


def test_enough_signal_over_enough_turns_is_due_now() -> None:
    policy = SchedulePolicy(extract_score=20, min_batch_turns=3)
    assert policy.due_at(pending(3, 25), NOW) == NOW


def test_a_single_rich_turn_waits_for_company_unless_it_is_long() -> None:
    policy = SchedulePolicy(extract_score=20, min_batch_turns=3, long_text_chars=1500, max_wait_seconds=300)
    assert policy.due_at(pending(1, 25, chars=200), NOW) == NOW + timedelta(seconds=300)
    assert policy.due_at(pending(1, 25, chars=2000), NOW) == NOW


def test_too_many_waiting_turns_are_due_whatever_their_score() -> None:
    policy = SchedulePolicy(max_pending_turns=12)
    assert policy.due_at(pending(12, 3), NOW) == NOW
    assert policy.due_at(pending(11, 3), NOW) != NOW


def test_waiting_turns_become_due_when_the_oldest_has_waited_long_enough() -> None:
    policy = SchedulePolicy(max_wait_seconds=300)
    assert policy.due_at(pending(2, 5, age_seconds=100), NOW) == NOW + timedelta(seconds=200)
    assert policy.due_at(Pending(), NOW) is None


def test_new_turns_do_not_bring_a_retry_forward() -> None:
    policy = SchedulePolicy(extract_score=20, min_batch_turns=3)
    retry_at = NOW + timedelta(seconds=40)
    assert policy.due_at(pending(5, 50), NOW, retry_at) == retry_at


def test_failed_extractions_back_off_exponentially_up_to_a_cap() -> None:
    assert [retry_delay(n, 5, 60) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]


def test_a_batch_takes_the_oldest_turns_within_its_size_budget() -> None:
    turns = [TurnText(i, uuid4(), "u" * 100, "a" * 100) for i in range(10)]
    assert [t.seq for t in select_batch(turns, 40, 700)] == [0, 1, 2]
    assert [t.seq for t in select_batch(turns, 2, 10_000)] == [0, 1]
    huge = [TurnText(0, uuid4(), "u" * 5000, "")]
    assert select_batch(huge, 40, 1000) == huge
