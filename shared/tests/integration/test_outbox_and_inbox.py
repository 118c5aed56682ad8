"""The event backbone against a real broker and database: outbox relay, idempotent consumer, dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from orrery_shared.db import Database, OutboxRelay, Transaction, idempotent
from orrery_shared.events import UserRegistered, dlq_topic
from orrery_shared.kafka import encode, ensure_topics, event_headers, flush_offsets, make_broker, subscribe
from orrery_shared.settings import KafkaSettings
from tests.support.infra import Infra
from tests.support.kafka_control import DisposableKafka

pytestmark = pytest.mark.integration

meta = sa.MetaData()
probes = sa.Table("probes", meta, sa.Column("id", sa.Uuid, primary_key=True), sa.Column("label", sa.Text))
applied = sa.Table("applied", meta, sa.Column("user_id", sa.Uuid), sa.Column("event_id", sa.Uuid))
TOPIC = UserRegistered.TOPIC


class Pipeline:
    """A service in miniature: state changes publish through the outbox, a consumer applies them once."""

    def __init__(self, db: Database, bootstrap: str, poison: set[UUID] | None = None) -> None:
        self.db = db
        self.broker = make_broker(KafkaSettings(bootstrap_servers=bootstrap), "test")
        self.relay = OutboxRelay(db, self.broker, poll_interval=0.2, publish_timeout=3, max_backoff=1)
        self.group = "test-" + uuid4().hex[:10]
        poison = poison or set()

        async def apply(event: UserRegistered, tx: Transaction) -> None:
            if event.user_id in poison:
                raise ValueError("this user cannot be applied")
            await tx.session.execute(applied.insert().values(user_id=event.user_id, event_id=event.event_id))

        subscribe(self.broker, UserRegistered, self.group, idempotent(db, self.group, apply), retry_delay=0.01)

    async def __aenter__(self) -> Pipeline:
        await self.broker.start()
        self.relay.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.relay.stop()
        await flush_offsets(self.broker)
        await self.broker.stop()

    def handled(self) -> float:
        labels = {"topic": TOPIC, "group": self.group, "outcome": "ok"}
        return REGISTRY.get_sample_value("orrery_events_consumed_total", labels) or 0.0


async def register(db: Database, label: str) -> UserRegistered:
    """A state change and its event, committed together."""
    event = UserRegistered(user_id=uuid4(), username=label, is_guest=True, correlation_id=label)
    async with db.transaction() as tx:
        await tx.session.execute(probes.insert().values(id=event.user_id, label=label))
        await tx.publish(event)
    return event


async def applied_counts(db: Database, events: list[UserRegistered]) -> dict[UUID, int]:
    ids = [e.event_id for e in events]
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(applied.c.event_id, sa.func.count())
            .where(applied.c.event_id.in_(ids))
            .group_by(applied.c.event_id)
        )
        return {row[0]: row[1] for row in rows}


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s")
        await asyncio.sleep(0.1)


async def all_applied(db: Database, events: list[UserRegistered]) -> None:
    async def done() -> bool:
        return len(await applied_counts(db, events)) == len(events)

    await eventually(done)


async def test_state_change_reaches_a_consumer_exactly_once_through_outbox_and_broker(
    infra: Infra, scratch_db: Database
) -> None:
    async with Pipeline(scratch_db, infra.kafka_bootstrap) as pipeline:
        events = [await register(scratch_db, f"user-{i}") for i in range(5)]
        await all_applied(scratch_db, events)

        # Redeliver the first event, then a sentinel on the same partition: once the sentinel is applied,
        # the duplicate has certainly been consumed before it.
        sentinel = UserRegistered(user_id=uuid4(), username="sentinel", is_guest=True)
        same_key = events[0].partition_key().encode()
        await pipeline.broker.publish(encode(events[0]), TOPIC, key=same_key, headers=event_headers(events[0]))
        await pipeline.broker.publish(encode(sentinel), TOPIC, key=same_key, headers=event_headers(sentinel))
        await all_applied(scratch_db, [sentinel])

    assert await applied_counts(scratch_db, events) == {e.event_id: 1 for e in events}
    async with scratch_db.engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM outbox")) == 0


async def test_outbox_rows_are_not_published_when_the_transaction_rolls_back(
    infra: Infra, scratch_db: Database
) -> None:
    event = UserRegistered(user_id=uuid4(), username="ghost", is_guest=True)
    with pytest.raises(RuntimeError):
        async with scratch_db.transaction() as tx:
            await tx.publish(event)
            raise RuntimeError("the state change failed")
    async with scratch_db.engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM outbox")) == 0


@pytest.fixture(scope="module")
def outage_kafka() -> AsyncIterator[DisposableKafka]:
    kafka = DisposableKafka("kafka-outage", 19192, 19193)
    kafka.stop()
    kafka.wipe()
    kafka.start()
    asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=kafka.bootstrap)))
    try:
        yield kafka  # type: ignore[misc]
    finally:
        kafka.stop()
        kafka.wipe()


async def test_events_committed_during_a_broker_outage_are_delivered_once_after_it_returns(
    outage_kafka: DisposableKafka, scratch_db: Database
) -> None:
    async with Pipeline(scratch_db, outage_kafka.bootstrap) as pipeline:
        before = [await register(scratch_db, "before-outage")]
        await all_applied(scratch_db, before)

        await asyncio.to_thread(outage_kafka.stop)
        during = [await register(scratch_db, f"during-outage-{i}") for i in range(6)]
        await asyncio.sleep(2)  # the relay tries, fails and keeps the rows
        async with scratch_db.engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT count(*) FROM outbox")) == len(during)
        await asyncio.to_thread(outage_kafka.start)

        await all_applied(scratch_db, during)
        # A redelivered duplicate after the outage changes nothing either.
        handled = pipeline.handled()
        await pipeline.broker.publish(encode(during[0]), TOPIC, key=during[0].partition_key().encode())
        await eventually(lambda: _grew(pipeline, handled))

    assert await applied_counts(scratch_db, before + during) == {e.event_id: 1 for e in before + during}


async def _grew(pipeline: Pipeline, handled: float) -> bool:
    return pipeline.handled() > handled


async def dead_letters(bootstrap: str, group: str, keys: set[bytes]) -> list[dict[str, str]]:
    """Headers and body of the DLQ entries a consumer group wrote for messages with the given keys."""
    consumer = AIOKafkaConsumer(dlq_topic(TOPIC), bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < len(keys) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    if headers.get("x-dlq-consumer-group") == group and record.key in keys:
                        found.append({**headers, "body": (record.value or b"").decode(errors="replace")})
    finally:
        await consumer.stop()
    return found


async def test_poison_messages_go_to_the_dead_letter_topic_and_consumption_continues(
    infra: Infra, scratch_db: Database
) -> None:
    poisoned = UserRegistered(user_id=uuid4(), username="poison", is_guest=True)
    async with Pipeline(scratch_db, infra.kafka_bootstrap, poison={poisoned.user_id}) as pipeline:
        broken, incomplete = (f"{label}-{uuid4()}".encode() for label in ("broken", "incomplete"))
        await pipeline.broker.publish(b'{"type": "auth.user-registered.v1", "user_id": 42', TOPIC, key=broken)
        await pipeline.broker.publish(b'{"username": "no id"}', TOPIC, key=incomplete)
        await pipeline.broker.publish(encode(poisoned), TOPIC, key=poisoned.partition_key().encode())
        good = [await register(scratch_db, f"after-poison-{i}") for i in range(3)]
        await all_applied(scratch_db, good)
        keys = {broken, incomplete, poisoned.partition_key().encode()}
        letters = await dead_letters(infra.kafka_bootstrap, pipeline.group, keys)

    by_reason: dict[str, list[dict[str, str]]] = {}
    for letter in letters:
        by_reason.setdefault(letter["x-dlq-reason"], []).append(letter)
    assert len(by_reason["invalid"]) == 2
    assert any("json_invalid" in letter["x-dlq-error"] for letter in by_reason["invalid"])
    assert any("user_id" in letter["x-dlq-error"] for letter in by_reason["invalid"])
    [failed] = by_reason["handler_failed"]
    assert "this user cannot be applied" in failed["x-dlq-error"]
    assert failed["x-dlq-source-topic"] == TOPIC
    assert str(poisoned.event_id) in failed["body"]  # the original bytes, ready to be replayed
    assert await applied_counts(scratch_db, [poisoned]) == {}


async def test_keyed_concurrency_lets_other_keys_of_a_partition_overtake_a_slow_one(infra: Infra) -> None:
    broker = make_broker(KafkaSettings(bootstrap_servers=infra.kafka_bootstrap), "test")
    slow, fast = uuid4(), uuid4()
    finished: list[tuple[UUID, str]] = []
    done = asyncio.Event()

    async def handle(event: UserRegistered) -> None:
        if event.user_id not in (slow, fast):
            return  # earlier tests' events on the shared topic
        if event.user_id == slow and event.username == "first":
            await asyncio.sleep(1.0)
        finished.append((event.user_id, event.username))
        if len(finished) == 3:
            done.set()

    subscribe(broker, UserRegistered, "test-" + uuid4().hex[:10], handle, concurrency=8)
    await broker.start()
    try:
        for user, name in ((slow, "first"), (slow, "second"), (fast, "only")):
            event = UserRegistered(user_id=user, username=name, is_guest=True)
            # One partition for all three, so only per-key lanes can let `fast` overtake.
            await broker.publish(encode(event), TOPIC, key=event.partition_key().encode(), partition=0)
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await flush_offsets(broker)
        await broker.stop()
    assert finished == [(fast, "only"), (slow, "first"), (slow, "second")]
