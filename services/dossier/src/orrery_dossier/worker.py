"""Background extraction: a few loops per process taking due projects, woken by the intake or a short poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from orrery_dossier.handlers import ExtractionRunner

log = logging.getLogger(__name__)


class ExtractionWorkers:
    """`count` loops running `runner.run_once()` while there is work, then waiting for a wake-up or the poll."""

    def __init__(self, runner: ExtractionRunner, count: int, poll_seconds: float) -> None:
        self.runner = runner
        self.count = count
        self.poll_seconds = poll_seconds
        self._wakes = [asyncio.Event() for _ in range(count)]
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """A project just became due: look now instead of at the next poll."""
        for event in self._wakes:
            event.set()

    def start(self) -> None:
        """Start the loops (in the running event loop)."""
        self._tasks = [
            asyncio.create_task(self._loop(wake), name=f"dossier-extraction-{i}") for i, wake in enumerate(self._wakes)
        ]

    async def stop(self) -> None:
        """Cancel the loops; a lease they held is given back, or expires."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _loop(self, wake: asyncio.Event) -> None:
        while True:
            wake.clear()
            try:
                if await self.runner.run_once():
                    continue
            except Exception:
                # The database may be down; the turns are safe in it, so wait and look again.
                log.exception("extraction loop failed; retrying after the poll interval")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that coincides with a wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await wake.wait()
