"""Backoff and Retry-After arithmetic."""

from __future__ import annotations

from email.utils import formatdate

from orrery_shared.llm.retry import BackoffPolicy, RetryBudget, backoff_delay, parse_retry_after, retry_delay

POLICY = BackoffPolicy(base_s=0.5, max_s=8.0)


def test_backoff_doubles_per_retry_within_equal_jitter_bounds() -> None:
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        assert backoff_delay(retry, POLICY, rand=lambda: 0.0) == ceiling / 2
        assert backoff_delay(retry, POLICY, rand=lambda: 1.0) == ceiling


def test_backoff_jitter_spreads_clients() -> None:
    import random

    rng = random.Random(1)
    delays = {round(backoff_delay(3, POLICY, rand=rng.random), 6) for _ in range(50)}
    assert len(delays) > 40
    assert all(1.0 <= d <= 2.0 for d in delays)


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert parse_retry_after({"Retry-After": formatdate(1_000_030, usegmt=True)}, now=1_000_000) == 30.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "-4"}) == 0.0


def test_a_provider_hint_wins_over_backoff() -> None:
    assert 2.0 <= retry_delay(1, POLICY, 2.0, rand=lambda: 1.0) <= 2.1
    assert retry_delay(1, POLICY, None, rand=lambda: 1.0) == 0.5


def test_the_budget_refuses_waits_that_would_end_after_it() -> None:
    now = [100.0]
    budget = RetryBudget(10.0, clock=lambda: now[0])
    assert budget.allows(9.9)
    now[0] = 105.0
    assert budget.remaining() == 5.0
    assert not budget.allows(5.1)
    now[0] = 120.0
    assert budget.remaining() == 0.0
