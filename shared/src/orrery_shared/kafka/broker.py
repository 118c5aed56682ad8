"""The Kafka broker every service uses: FastStream over aiokafka with an idempotent, acks=all producer."""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from faststream.kafka import KafkaBroker

from orrery_shared import telemetry
from orrery_shared.events import Event
from orrery_shared.settings import KafkaSettings

CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Membership:
    """How a broker's consumers take part in their groups (from KafkaSettings)."""

    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    group_instance_id: str | None = None


# Read by orrery_shared.kafka.consumer.subscribe for the broker's consumers; a broker made elsewhere (a test's)
# gets aiokafka's defaults.
MEMBERSHIP: weakref.WeakKeyDictionary[KafkaBroker, Membership] = weakref.WeakKeyDictionary()


def make_broker(settings: KafkaSettings, service: str) -> KafkaBroker:
    """A broker whose producer never loses or duplicates a send on retry (acks=all + idempotence)."""
    broker = KafkaBroker(
        settings.bootstrap_servers.split(","),
        client_id=f"{settings.client_id_prefix}-{service}",
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=settings.request_timeout_ms,
        logger=None,
        # Our subscribers parse their own bodies; skipping FastStream's dependency injection avoids a
        # thread-pool hop per message and keeps the consumer's per-message cost to a few microseconds.
        apply_types=False,
    )
    MEMBERSHIP[broker] = Membership(
        settings.session_timeout_ms, settings.heartbeat_interval_ms, settings.group_instance_id
    )
    return broker


def event_headers(event: Event, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Kafka headers beside the body: the type and correlation for routing and tracing without parsing."""
    headers = {"content-type": CONTENT_TYPE, "x-event-type": event.type, "x-event-id": str(event.event_id)}
    if event.correlation_id:
        headers["x-correlation-id"] = event.correlation_id
    if extra:
        headers.update(extra)
    return headers


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


async def publish_event(broker: KafkaBroker, event: Event, headers: dict[str, str] | None = None) -> None:
    """Publish one event straight to its topic (services with a database go through the outbox instead)."""
    key = event.partition_key()
    with telemetry.producing(event.TOPIC, "publish", key, str(event.event_id)) as trace_context:
        await broker.publish(
            encode(event),
            event.TOPIC,
            key=key.encode(),
            headers=event_headers(event, {**trace_context, **headers} if headers else trace_context),
        )


def header_dict(raw: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None) -> dict[str, str]:
    return {k: (v or b"").decode(errors="replace") for k, v in (raw or [])}


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
