"""Prometheus metrics shared by every service (each service process has its own registry: the default)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("orrery_events_consumed_total", "Events handled by a consumer", ["topic", "group", "outcome"])
EVENTS_DEAD_LETTERED = Counter(
    "orrery_events_dead_lettered_total", "Events sent to a dead-letter topic", ["topic", "reason"]
)
EVENT_HANDLING_SECONDS = Histogram("orrery_event_handling_seconds", "Time to handle one event", ["topic", "group"])
OUTBOX_PUBLISHED = Counter("orrery_outbox_published_total", "Events relayed from the outbox", ["topic"])
OUTBOX_BACKLOG = Gauge("orrery_outbox_backlog", "Outbox rows not yet relayed, as last seen by the relay")
OUTBOX_RELAY_FAILURES = Counter("orrery_outbox_relay_failures_total", "Relay batches that failed to publish")
