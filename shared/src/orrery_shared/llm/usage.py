"""Usage of every LLM call: what answered, how many tokens, how fast; recorded to sinks and returned."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from prometheus_client import Counter, Histogram

log = logging.getLogger("orrery.llm.usage")

Outcome = Literal["ok", "interrupted", "cancelled", "failed"]

LLM_CALLS = Counter("orrery_llm_calls_total", "LLM calls by outcome", ["task", "provider", "model", "outcome"])
LLM_TOKENS = Counter("orrery_llm_tokens_total", "LLM tokens", ["task", "provider", "model", "kind"])
LLM_LATENCY = Histogram(
    "orrery_llm_latency_seconds",
    "Whole-call latency of LLM calls",
    ["task", "provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
LLM_TTFT = Histogram(
    "orrery_llm_ttft_seconds",
    "Time to first token of streamed LLM calls",
    ["task", "provider"],
    buckets=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 4, 8),
)
LLM_ATTEMPT_FAILURES = Counter(
    "orrery_llm_attempt_failures_total", "Failed LLM requests, retried or not", ["provider", "model", "error"]
)


@dataclass(frozen=True)
class Usage:
    """Accounting of one call.

    `provider`/`model` is the route entry that answered (the last one tried when all failed). Tokens
    are the provider's counts when it reports them, else estimates (`estimated` is then true); a
    structured call's repair request is included. `latency_s` and `ttft_s` run from the start of the
    call, so they include retries and fallbacks: they are what the user waited. `ttft_s` is None for
    non-streamed calls. `requests` counts every HTTP request made: retries, fallbacks and repairs.
    """

    task: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    ttft_s: float | None
    estimated: bool
    requests: int
    outcome: Outcome = "ok"

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class UsageSink(Protocol):
    """Somewhere usage goes (metrics, a billing table, a test's list)."""

    def record(self, usage: Usage) -> None:
        """Take one call's usage; must not block or raise."""


class MetricsUsageSink:
    """Prometheus counters and histograms plus a debug log line per call."""

    def record(self, usage: Usage) -> None:
        """Update the orrery_llm_* metrics."""
        LLM_CALLS.labels(usage.task, usage.provider, usage.model, usage.outcome).inc()
        LLM_TOKENS.labels(usage.task, usage.provider, usage.model, "prompt").inc(usage.prompt_tokens)
        LLM_TOKENS.labels(usage.task, usage.provider, usage.model, "completion").inc(usage.completion_tokens)
        LLM_LATENCY.labels(usage.task, usage.provider).observe(usage.latency_s)
        if usage.ttft_s is not None:
            LLM_TTFT.labels(usage.task, usage.provider).observe(usage.ttft_s)
        log.debug(
            "llm call",
            extra={
                "task": usage.task,
                "provider": usage.provider,
                "model": usage.model,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "latency_s": round(usage.latency_s, 4),
                "ttft_s": None if usage.ttft_s is None else round(usage.ttft_s, 4),
                "estimated": usage.estimated,
                "requests": usage.requests,
                "outcome": usage.outcome,
            },
        )


class InMemoryUsageSink:
    """Keeps every usage in a list (tests, small tools)."""

    def __init__(self) -> None:
        self.records: list[Usage] = []

    def record(self, usage: Usage) -> None:
        """Append `usage`."""
        self.records.append(usage)


class FanOutUsageSink:
    """Sends each usage to several sinks."""

    def __init__(self, *sinks: UsageSink) -> None:
        self.sinks = sinks

    def record(self, usage: Usage) -> None:
        """Record `usage` in every sink, isolating a failing sink from the others."""
        for sink in self.sinks:
            try:
                sink.record(usage)
            except Exception:
                log.exception("usage sink %r failed", sink)


def record_attempt_failure(provider: str, model: str, error: str) -> None:
    """Count one failed request (retried or not) by its error class name."""
    LLM_ATTEMPT_FAILURES.labels(provider, model, error).inc()
