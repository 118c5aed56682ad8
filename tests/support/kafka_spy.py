"""Watching topics on the real broker from the moment a test starts (no consumer group, so no rebalance wait)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from orrery_shared.events import Event

E = TypeVar("E", bound=Event)


class KafkaSpy:
    """Collects every event published on some topics after `start()`."""

    def __init__(self, bootstrap: str, *event_types: type[Event]) -> None:
        self.bootstrap = bootstrap
        self.models = {cls.TOPIC: cls for cls in event_types}
        self.events: list[Event] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self._consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in self.models
            for p in sorted(self._consumer.partitions_for_topic(topic) or await self._partitions(topic))
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, so nothing published later is skipped
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._collect())

    async def _partitions(self, topic: str) -> set[int]:
        assert self._consumer is not None
        await self._consumer._client.force_metadata_update()
        return self._consumer.partitions_for_topic(topic) or set()

    async def _collect(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            model = self.models[record.topic]
            self.events.append(model.model_validate_json(record.value or b""))
            self._arrived.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    def of(self, event_type: type[E], where: Callable[[E], bool] = lambda _: True) -> list[E]:
        return [e for e in self.events if isinstance(e, event_type) and where(e)]

    async def wait_for(self, event_type: type[E], where: Callable[[E], bool], timeout: float = 30) -> E:
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(event_type, where)
            if found:
                return found[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event_type.__name__} matching the condition within {timeout}s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)


@contextlib.asynccontextmanager
async def spying(bootstrap: str, *event_types: type[Event]) -> AsyncIterator[KafkaSpy]:
    spy = KafkaSpy(bootstrap, *event_types)
    await spy.start()
    try:
        yield spy
    finally:
        await spy.stop()
