"""Chat's own Prometheus metrics (beside orrery_shared.metrics and the LLM client's)."""

from __future__ import annotations

from prometheus_client import Histogram

# Fine buckets where chat's own share lives (a few milliseconds), coarse ones for slow providers.
_FIRST_DELTA_BUCKETS = (
    *(n / 2000 for n in range(1, 21)),  # 0.5 ms steps up to 10 ms
    0.0125,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

FIRST_DELTA_SECONDS = Histogram(
    "orrery_chat_first_delta_seconds",
    "From taking a turn to its reply's first delta written to Redis (the LLM's time to first token included)",
    buckets=_FIRST_DELTA_BUCKETS,
)
