"""Retry timing: exponential backoff with jitter, the provider's Retry-After, and a per-call budget."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class BackoffPolicy:
    """How long to wait between tries of one route entry."""

    base_s: float = 0.5
    max_s: float = 8.0
    multiplier: float = 2.0


def backoff_delay(retry: int, policy: BackoffPolicy, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number `retry` (1 = first retry): exponential, capped, with equal jitter."""
    ceiling = min(policy.max_s, policy.base_s * policy.multiplier ** max(0, retry - 1))
    # Equal jitter keeps at least half the exponential step (so retries stay spaced out) while
    # spreading clients that failed together across the other half.
    return ceiling / 2 + rand() * ceiling / 2


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the provider asked us to wait (retry-after-ms, or Retry-After in seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class RetryBudget:
    """Bounds one call: no retry starts if its wait would end after `budget_s` from the call's start."""

    budget_s: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        """Seconds left in the budget (never negative)."""
        return max(0.0, self.started + self.budget_s - self.clock())

    def allows(self, delay_s: float) -> bool:
        """Whether a retry after waiting `delay_s` still fits in the budget."""
        return delay_s <= self.remaining()


def retry_delay(
    retry: int,
    policy: BackoffPolicy,
    retry_after_s: float | None,
    rand: Callable[[], float] = random.random,
) -> float:
    """The wait before retry `retry`: the provider's Retry-After when given, else backoff."""
    if retry_after_s is not None:
        # The provider knows its own limits better than our schedule; a little jitter still avoids
        # every waiting client arriving in the same millisecond.
        return retry_after_s + rand() * min(0.1, retry_after_s * 0.1)
    return backoff_delay(retry, policy, rand)
