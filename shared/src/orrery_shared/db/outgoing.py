"""The outbox row an event becomes, whichever kind of transaction writes it."""

from __future__ import annotations

from typing import Any

from orrery_shared import telemetry
from orrery_shared.events import Event
from orrery_shared.kafka.broker import event_headers


def outbox_row(event: Event) -> dict[str, Any]:
    key = event.partition_key()
    # The trace context is taken now and stored with the row, so the relay's publish continues this trace.
    with telemetry.producing(event.TOPIC, "create", key, str(event.event_id)) as trace_context:
        headers = event_headers(event, trace_context)
    return {
        "event_id": event.event_id,
        "topic": event.TOPIC,
        "key": key,
        "payload": event.model_dump_json(),
        "headers": headers,
    }
