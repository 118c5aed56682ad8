"""Per-key ordering with concurrency across keys, and the offsets that are safe to commit meanwhile.

Events of one key run one after another in arrival order; events of different keys run concurrently, up to a
limit (beyond it the consumer stops fetching: backpressure). Because handling finishes out of order, a
partition's committable position is the lowest offset still in flight — never past an unhandled message.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable


class PartitionProgress:
    def __init__(self) -> None:
        self._in_flight: list[int] = []
        self._done: set[int] = set()
        self._next = 0

    def started(self, offset: int) -> None:
        heapq.heappush(self._in_flight, offset)
        self._next = max(self._next, offset + 1)

    def finished(self, offset: int) -> int:
        """Mark `offset` handled; returns the offset a restart may resume from."""
        self._done.add(offset)
        while self._in_flight and self._in_flight[0] in self._done:
            self._done.discard(heapq.heappop(self._in_flight))
        return self._in_flight[0] if self._in_flight else self._next


class KeyedLanes:
    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(max(1, limit)) if limit > 1 else None
        self._tails: dict[bytes, asyncio.Task[None]] = {}
        self._partitions: dict[tuple[str, int], PartitionProgress] = {}

    def partition(self, topic: str, partition: int) -> PartitionProgress:
        return self._partitions.setdefault((topic, partition), PartitionProgress())

    async def submit(self, key: bytes, work: Callable[[], Awaitable[None]]) -> None:
        """Schedule `work` after the key's previous work; waits only while the concurrency limit is reached."""
        assert self._slots is not None
        await self._slots.acquire()
        previous = self._tails.get(key)
        task = asyncio.create_task(self._after(previous, work))
        self._tails[key] = task
        task.add_done_callback(lambda t: self._release(key, t))

    async def _after(self, previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its failure is its own; order is what matters here
        await work()

    def _release(self, key: bytes, task: asyncio.Task[None]) -> None:
        assert self._slots is not None
        self._slots.release()
        if self._tails.get(key) is task:
            del self._tails[key]

    async def drain(self, seconds: float) -> None:
        """Wait for in-flight work to finish, cancelling what is left after `seconds`."""
        tasks = list(self._tails.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
