"""Subscribing a handler to an event topic: validation, bounded retries, and a dead-letter topic.

A message that cannot be parsed, or whose handler keeps failing, is copied to `<topic>.dlq` with the error in
its headers and the offset moves on: a poison message never blocks its partition and never vanishes.
Infrastructure outages (database or network down) are different: dead-lettering every message during an
outage would be wrong, so the offset is rewound and the message retried until the dependency is back.
Offsets are committed in the background after handling (see offsets.py): at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaAckableMessage
from faststream.message import StreamMessage
from pydantic import ValidationError

from orrery_shared import telemetry
from orrery_shared.events import Event, dlq_topic
from orrery_shared.kafka.broker import MEMBERSHIP, Membership, event_headers
from orrery_shared.kafka.lanes import KeyedLanes
from orrery_shared.kafka.offsets import OffsetCommitter
from orrery_shared.logging import correlation_id
from orrery_shared.metrics import EVENT_HANDLING_SECONDS, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None]]

MAX_ERROR_CHARS = 2_000


_COMMITTERS: weakref.WeakKeyDictionary[KafkaBroker, list[OffsetCommitter]] = weakref.WeakKeyDictionary()


_LANES: weakref.WeakKeyDictionary[KafkaBroker, list[KeyedLanes]] = weakref.WeakKeyDictionary()


async def flush_offsets(broker: KafkaBroker, drain_seconds: float = 10.0) -> None:
    """Let in-flight events finish (up to `drain_seconds`), then commit what was handled; before broker.stop()."""
    for lanes in _LANES.get(broker, []):
        await lanes.drain(drain_seconds)
    for committer in _COMMITTERS.get(broker, []):
        await committer.close()


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it goes to the DLQ without retries."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning a dependency is down, not that the message is bad."""
    import psycopg
    import redis.exceptions
    import sqlalchemy.exc

    return (
        ConnectionError,
        TimeoutError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time: the database is saturated
        psycopg.OperationalError,  # raised as is by code on the driver connection
        psycopg.InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    )


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    # Decoding is ours: FastStream must not fail on malformed JSON before we can dead-letter it.
    return message.body


class DeadLetters:
    """Copies a failed message to its topic's DLQ, keeping the original bytes and key."""

    def __init__(self, broker: KafkaBroker, group_id: str) -> None:
        self.broker = broker
        self.group_id = group_id

    async def send(self, message: KafkaAckableMessage, reason: str, error: str) -> None:
        raw = message.raw_message
        assert not isinstance(raw, tuple)
        headers = dict((k, (v or b"").decode(errors="replace")) for k, v in raw.headers or [])
        headers.update(
            {
                "x-dlq-reason": reason,
                "x-dlq-error": error[:MAX_ERROR_CHARS],
                "x-dlq-source-topic": raw.topic,
                "x-dlq-source-partition": str(raw.partition),
                "x-dlq-source-offset": str(raw.offset),
                "x-dlq-consumer-group": self.group_id,
            }
        )
        await self.broker.publish(message.body, dlq_topic(raw.topic), key=raw.key, headers=headers)
        EVENTS_DEAD_LETTERED.labels(raw.topic, reason).inc()
        log.warning("message dead-lettered", extra={"topic": raw.topic, "offset": raw.offset, "reason": reason})


def subscribe(
    broker: KafkaBroker,
    event_type: type[E],
    group_id: str,
    handler: Handler[E],
    *,
    concurrency: int = 1,
    attempts: int = 3,
    retry_delay: float = 0.05,
    outage_delay: float = 1.0,
) -> Any:
    """Consume `event_type`'s topic in consumer group `group_id`, handing each valid event to `handler`.

    With `concurrency` > 1, events with different keys are handled concurrently (up to that many at once)
    while events with the same key stay strictly in order: one slow key (a long LLM stream, say) no longer
    holds up every other key that happens to share its partition.
    """
    topic = event_type.TOPIC
    dead_letters = DeadLetters(broker, group_id)
    transient = transient_errors()
    committer = OffsetCommitter()
    _COMMITTERS.setdefault(broker, []).append(committer)

    async def process(body: bytes, message: KafkaAckableMessage, wait_out_outages: bool) -> str:
        """Validate and handle one message; returns its outcome. Raises a transient error only if asked to."""
        if not telemetry.enabled():
            return await handle(body, message, wait_out_outages)
        # The span is ours, not FastStream's KafkaTelemetryMiddleware: that one ends its span when the
        # subscriber function returns, which with keyed concurrency is before the handler has even started,
        # and on publish it replaces the trace context an outbox row carries with the relay's own.
        with telemetry.consuming(topic, group_id, _record(message)) as span:
            outcome = await handle(body, message, wait_out_outages)
            if outcome != "ok":
                telemetry.failed(span, f"dead-lettered: {outcome}")
            return outcome

    async def handle(body: bytes, message: KafkaAckableMessage, wait_out_outages: bool) -> str:
        try:
            event = event_type.model_validate_json(body)
        except ValidationError as error:
            await dead_letters.send(message, "invalid", str(error))
            return "invalid"
        token = correlation_id.set(event.correlation_id)
        try:
            attempt = 0
            while True:
                attempt += 1
                try:
                    await handler(event)
                    return "ok"
                except PermanentError as error:
                    await dead_letters.send(message, "rejected", f"{type(error).__name__}: {error}")
                    return "rejected"
                except transient as error:
                    # The message is fine, a dependency is not: never dead-letter because of an outage.
                    log.warning("dependency unavailable; will retry", extra={"error": repr(error)})
                    await asyncio.sleep(outage_delay)
                    if not wait_out_outages:
                        raise
                    attempt = 0
                except Exception as error:
                    if attempt >= attempts:
                        log.exception("handler failed; dead-lettering")
                        await dead_letters.send(message, "handler_failed", f"{type(error).__name__}: {error}")
                        return "failed"
                    await asyncio.sleep(retry_delay * 2 ** (attempt - 1))
        finally:
            correlation_id.reset(token)

    def observe(outcome: str, started: float) -> None:
        EVENTS_CONSUMED.labels(topic, group_id, outcome).inc()
        EVENT_HANDLING_SECONDS.labels(topic, group_id).observe(time.perf_counter() - started)

    async def consume_in_order(body: bytes) -> None:
        started = time.perf_counter()
        message: KafkaAckableMessage = broker.context.get_local("message")
        raw = _record(message)
        try:
            outcome = await process(body, message, wait_out_outages=False)
        except transient:
            await message.nack()  # rewinds this partition to the message: it comes back
            return
        committer.handled(message.consumer, raw.topic, raw.partition, raw.offset)
        observe(outcome, started)

    lanes = KeyedLanes(concurrency)

    async def consume_by_key(body: bytes) -> None:
        started = time.perf_counter()
        message: KafkaAckableMessage = broker.context.get_local("message")
        raw = _record(message)
        consumer = message.consumer
        progress = lanes.partition(raw.topic, raw.partition)
        progress.started(raw.offset)

        async def work() -> None:
            try:
                outcome = await process(body, message, wait_out_outages=True)
            except Exception:
                # Not marked finished: the partition's commits stop short of it, so it is redelivered.
                log.exception("event left unhandled; it will be redelivered after a restart or rebalance")
                return
            observe(outcome, started)
            committer.commit_before(consumer, raw.topic, raw.partition, progress.finished(raw.offset))

        await lanes.submit(raw.key or b"", work)

    _LANES.setdefault(broker, []).append(lanes)
    membership = MEMBERSHIP.get(broker, Membership())
    instance = membership.group_instance_id
    return broker.subscriber(
        topic,
        group_id=group_id,
        session_timeout_ms=membership.session_timeout_ms,
        heartbeat_interval_ms=membership.heartbeat_interval_ms,
        # One name per consumer of the group: a service may consume two topics in one group.
        group_instance_id=f"{instance}.{topic}" if instance else None,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        decoder=_raw_body,
        title=f"{group_id}:{topic}",
        description=(event_type.__doc__ or "").strip(),
    )(consume_in_order if concurrency <= 1 else consume_by_key)


def _record(message: KafkaAckableMessage) -> Any:
    raw = message.raw_message
    assert not isinstance(raw, tuple)
    return raw


__all__ = ["DeadLetters", "PermanentError", "event_headers", "flush_offsets", "subscribe"]
