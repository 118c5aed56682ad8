"""Commits consumed offsets in the background instead of one broker round trip per message.

A message's offset is recorded only after it was handled, so a crash re-delivers at most the last interval's
messages — which the inbox (or the handler's own idempotence) absorbs. Commits are per partition and explicit,
so a message still being handled is never committed past.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class OffsetCommitter:
    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._flush_scheduled = False
        self._task: asyncio.Future[None] | None = None

    def handled(self, consumer: AIOKafkaConsumer, topic: str, partition: int, offset: int) -> None:
        """Record that the message at `offset` and all before it are done; committed within `interval`."""
        self.commit_before(consumer, topic, partition, offset + 1)

    def commit_before(self, consumer: AIOKafkaConsumer, topic: str, partition: int, next_offset: int) -> None:
        """Record that every message before `next_offset` is done (the position a restart resumes from)."""
        self._consumer = consumer
        self._pending[TopicPartition(topic, partition)] = next_offset
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.interval, self._schedule_flush)

    def _schedule_flush(self) -> None:
        self._task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        self._flush_scheduled = False
        consumer, pending = self._consumer, self._pending
        if consumer is None or not pending or getattr(consumer, "_closed", False):
            return
        self._pending = {}
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in pending.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (KafkaError, AssertionError) as error:
            # A rebalance took the partition away: its new owner starts from the last commit, and the
            # inbox absorbs what is handled twice.
            log.info("offset commit skipped", extra={"error": repr(error)})
        except Exception:  # pragma: no cover - never let a background commit crash the loop
            log.exception("offset commit failed")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
