"""Keyed lanes: order within a key, concurrency across keys, and never committing past unhandled work."""

from __future__ import annotations

import asyncio

from orrery_shared.kafka.lanes import KeyedLanes, PartitionProgress


def test_the_commit_position_waits_for_the_lowest_unfinished_offset() -> None:
    progress = PartitionProgress()
    for offset in (10, 11, 12):
        progress.started(offset)
    assert progress.finished(12) == 10
    assert progress.finished(10) == 11
    assert progress.finished(11) == 13


async def test_work_of_one_key_runs_in_order_while_other_keys_overtake_it() -> None:
    lanes = KeyedLanes(limit=10)
    finished: list[str] = []

    def job(name: str, seconds: float):
        async def run() -> None:
            await asyncio.sleep(seconds)
            finished.append(name)

        return run

    await lanes.submit(b"slow", job("slow-1", 0.2))
    await lanes.submit(b"slow", job("slow-2", 0.0))
    await lanes.submit(b"fast", job("fast-1", 0.0))
    await lanes.drain(5)
    assert finished == ["fast-1", "slow-1", "slow-2"]


async def test_submitting_waits_when_the_concurrency_limit_is_reached() -> None:
    lanes = KeyedLanes(limit=2)
    release = asyncio.Event()

    async def blocked() -> None:
        await release.wait()

    await lanes.submit(b"a", blocked)
    await lanes.submit(b"b", blocked)
    third = asyncio.create_task(lanes.submit(b"c", blocked))
    await asyncio.sleep(0.05)
    assert not third.done()
    release.set()
    await asyncio.wait_for(third, 1)
    await lanes.drain(1)


async def test_a_failing_job_does_not_stop_the_next_job_of_its_key() -> None:
    lanes = KeyedLanes(limit=4)
    ran: list[str] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    async def runs() -> None:
        ran.append("second")

    await lanes.submit(b"k", fails)
    await lanes.submit(b"k", runs)
    await lanes.drain(1)
    assert ran == ["second"]
