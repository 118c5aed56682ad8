"""Publish→consume latency and throughput of the shared Kafka helpers on the local broker.

Two workloads, each run twice in the same process: through Orrery's helpers (FastStream broker with the
idempotent acks=all producer, `subscribe` with validation, DLQ routing and metrics) and through bare aiokafka
with the same producer durability and a plain JSON decode (the baseline). Printed: latency p50/p99 at a steady
1,000 msg/s, and throughput for 100,000 small events, with the helpers/baseline ratio.
Runs against ORRERY_KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:19092) on a topic of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from orrery_shared.events import Event, TopicSpec
from orrery_shared.kafka import encode, ensure_topics, event_headers, make_broker, subscribe
from orrery_shared.settings import KafkaSettings

RATE = 1_000
LATENCY_SECONDS = 5
THROUGHPUT_EVENTS = 100_000
TIMEOUT = 120


class BenchPinged(Event):
    """A tiny event used only by this benchmark."""

    TOPIC: ClassVar[str] = "bench.pinged.v1"
    KEY_FIELD: ClassVar[str] = "seq"
    type: Literal["bench.pinged.v1"] = "bench.pinged.v1"
    run: str
    seq: int


Send = Callable[[BenchPinged, bool], Awaitable[object]]


class Sink:
    """Records when each sequence number of this run arrived (the topic may hold earlier runs' events)."""

    def __init__(self) -> None:
        self.run = uuid.uuid4().hex
        self.arrived: dict[int, float] = {}
        self.done = asyncio.Event()
        self.expected = 0

    def expect(self, count: int) -> None:
        self.arrived.clear()
        self.done.clear()
        self.expected = count

    def record(self, run: str, seq: int) -> None:
        if run != self.run:
            return
        self.arrived[seq] = time.perf_counter()
        if len(self.arrived) >= self.expected:
            self.done.set()


async def latency(send: Send, sink: Sink) -> tuple[float, float]:
    count = RATE * LATENCY_SECONDS
    sink.expect(count)
    sent: dict[int, float] = {}
    start = time.perf_counter()
    for seq in range(count):
        delay = start + seq / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[seq] = time.perf_counter()
        await send(BenchPinged(run=sink.run, seq=seq), True)
    await asyncio.wait_for(sink.done.wait(), TIMEOUT)
    samples = sorted((sink.arrived[s] - sent[s]) * 1000 for s in range(count))
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def throughput(send: Send, sink: Sink) -> float:
    sink.expect(THROUGHPUT_EVENTS)
    events = [BenchPinged(run=sink.run, seq=seq) for seq in range(THROUGHPUT_EVENTS)]
    start = time.perf_counter()
    pending: list[Any] = []  # the broker's delivery futures
    for event in events:
        pending.append(await send(event, False))
        if len(pending) >= 5_000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await asyncio.wait_for(sink.done.wait(), TIMEOUT)
    return THROUGHPUT_EVENTS / (max(sink.arrived.values()) - start)


async def with_helpers(settings: KafkaSettings) -> tuple[tuple[float, float], float]:
    broker = make_broker(settings, "bench")
    sink = Sink()

    async def handle(event: BenchPinged) -> None:
        sink.record(event.run, event.seq)

    subscribe(broker, BenchPinged, f"bench-{uuid.uuid4().hex[:8]}", handle)

    async def send(event: BenchPinged, confirm: bool) -> object:
        return await broker.publish(
            encode(event),
            event.TOPIC,
            key=event.partition_key().encode(),
            headers=event_headers(event),
            no_confirm=not confirm,
        )

    await broker.start()
    await asyncio.sleep(3)  # let the consumer join its group before timing starts
    try:
        return await latency(send, sink), await throughput(send, sink)
    finally:
        await broker.stop()


async def baseline(settings: KafkaSettings) -> tuple[tuple[float, float], float]:
    servers = settings.bootstrap_servers.split(",")
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        BenchPinged.TOPIC,
        bootstrap_servers=servers,
        group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="latest",
    )
    sink = Sink()

    async def consume() -> None:
        async for record in consumer:
            body = json.loads(record.value)
            sink.record(body["run"], body["seq"])

    async def send(event: BenchPinged, confirm: bool) -> object:
        future = await producer.send(event.TOPIC, encode(event), key=event.partition_key().encode())
        return await future if confirm else future

    await producer.start()
    await consumer.start()
    task = asyncio.create_task(consume())
    await asyncio.sleep(3)
    try:
        return await latency(send, sink), await throughput(send, sink)
    finally:
        task.cancel()
        await consumer.stop()
        await producer.stop()


async def fresh_topic(admin: AIOKafkaAdminClient, settings: KafkaSettings) -> None:
    """Each run starts on an empty topic, so a consumer reading from the start sees only its own run."""
    if BenchPinged.TOPIC in await admin.list_topics():
        await admin.delete_topics([BenchPinged.TOPIC])
        while BenchPinged.TOPIC in await admin.list_topics():
            await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    await ensure_topics(settings, [TopicSpec(BenchPinged.TOPIC, 6)])


async def main() -> int:
    settings = KafkaSettings()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers.split(","))
    await admin.start()
    try:
        await fresh_topic(admin, settings)
        (raw_p50, raw_p99), raw_tput = await baseline(settings)
        await fresh_topic(admin, settings)
        (p50, p99), tput = await with_helpers(settings)
    finally:
        await admin.delete_topics([BenchPinged.TOPIC])
        await admin.close()
    print(f"kafka round trip, {RATE} msg/s for {LATENCY_SECONDS}s, then {THROUGHPUT_EVENTS:,} events (6 partitions)")
    print(f"{'':24}{'helpers':>12}{'baseline':>12}{'ratio':>8}")
    print(f"{'latency p50 (ms)':24}{p50:12.2f}{raw_p50:12.2f}{p50 / raw_p50:8.2f}")
    print(f"{'latency p99 (ms)':24}{p99:12.2f}{raw_p99:12.2f}{p99 / raw_p99:8.2f}")
    print(f"{'throughput (events/s)':24}{tput:12,.0f}{raw_tput:12,.0f}{tput / raw_tput:8.2f}")
    print(f"goal: p50 <= 2 ms, p99 <= 8 ms -> {'met' if p50 <= 2 and p99 <= 8 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
