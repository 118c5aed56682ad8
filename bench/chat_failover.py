"""How long a reply stalls when the chat replica answering it dies: the session timeout and static membership.

Starts its own LLM stub (replies of 80 tokens at 20 tokens/s) and chat processes on the local infrastructure,
then, for each Kafka membership configuration below, in the same run:
1. another replica alive: two chat processes; 8 turns are published (new conversations, spread over the
   partitions), and once each has streamed a few deltas one process is SIGKILLed. For every turn it was answering
   the time from the kill to the first delta of the restarted reply (from the stream entries' own Redis
   timestamps) is one sample. The killed process is started again once the turns are done; 4 trials.
2. restart in place: one chat process, SIGKILLed the same way and started again at once; 4 trials.
The baseline is aiokafka's defaults (session timeout 10 s, heartbeats every 3 s, dynamic membership); then a
6 s session with heartbeats every 1.5 s; then the platform's settings (6 s, 0.5 s: the surviving replica hears
of the rebalance with its next heartbeat); then those with static membership (`ORRERY_KAFKA_GROUP_INSTANCE_ID`),
which matters for a restart in place. Goals (issue: chaos under faults): p99 <= 7 s with another replica
alive, <= 3 s when the process restarts in place.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bench.chat_turns import pct
from orrery_shared.events import CharacterCreated, ChatTurnRequested
from orrery_shared.kafka import make_broker, publish_event
from orrery_shared.settings import KafkaSettings, RedisSettings
from tests.support.kafka_groups import seed_groups_at_end
from tests.support.processes import free_port, start_module, stop

TRIALS = int(os.environ.get("BENCH_FAILOVER_TRIALS", "4"))
TURNS_PER_TRIAL = 8


@dataclass(frozen=True)
class Membership:
    name: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    static: bool


CONFIGS = [
    Membership("baseline: aiokafka defaults (10 s / 3 s, dynamic)", 10_000, 3_000, False),
    Membership("6 s / 1.5 s, dynamic", 6_000, 1_500, False),
    Membership("platform: 6 s / 0.5 s, dynamic", 6_000, 500, False),
    Membership("platform: 6 s / 0.5 s, static membership", 6_000, 500, True),
]


def entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


class Run:
    def __init__(self, stub_url: str) -> None:
        self.stub_url = stub_url
        self.broker = make_broker(KafkaSettings(), "bench-failover")
        self.redis = Redis.from_url(RedisSettings().url)
        self.user = uuid.uuid4()
        self.character = uuid.uuid4()

    async def introduce(self) -> None:
        event = CharacterCreated(
            character_id=self.character,
            owner_user_id=self.user,
            name="Oren Vale",
            planet="Cassid",
            sex="male",
            species="human",
            archetype="ferryman",
            personality="steady",
            backstory="Ferried pilgrims across the ice sea.",
            speaking_style="slow and plain",
            greeting="Mind the gap, traveller.",
            portrait_url="",
            tags=[],
            portrait_provider="procedural",
        )
        await publish_event(self.broker, event)

    async def publish_turns(self) -> list[uuid.UUID]:
        turns = [
            ChatTurnRequested(
                turn_id=uuid.uuid4(),
                conversation_id=uuid.uuid4(),
                user_id=self.user,
                character_id=self.character,
                content="Tell me about the crossing.",
            )
            for _ in range(TURNS_PER_TRIAL)
        ]
        for turn in turns:
            await publish_event(self.broker, turn)
        return [t.turn_id for t in turns]

    async def entries(self, turn_id: uuid.UUID) -> list[tuple[bytes, dict[bytes, bytes]]]:
        raw: Any = await self.redis.xrange(f"turn:{turn_id}")
        return list(raw or [])

    async def wait(self, turn_ids: list[uuid.UUID], ready: Any, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for turn_id in turn_ids:
            while not ready(await self.entries(turn_id)):
                if time.monotonic() > deadline:
                    raise SystemExit(f"turn {turn_id} did not get there in {timeout} s")
                await asyncio.sleep(0.05)

    async def recovery_ms(self, turn_ids: list[uuid.UUID], killed_at_ms: int) -> list[float]:
        """For each turn restarted after the kill: kill -> the restarted reply's first delta."""
        samples = []
        for turn_id in turn_ids:
            entries = await self.entries(turn_id)
            kinds = [fields[b"type"] for _, fields in entries]
            if b"restart" not in kinds:
                continue  # the surviving replica was answering it: never interrupted
            after = entries[kinds.index(b"restart") + 1 :]
            first = next(entry_id for entry_id, fields in after if fields[b"type"] == b"delta")
            samples.append(float(entry_ms(first) - killed_at_ms))
        return samples


def ended(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> bool:
    return bool(entries) and entries[-1][1][b"type"] in (b"done", b"error")


def streaming(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> bool:
    return sum(1 for _, fields in entries if fields[b"type"] == b"delta") >= 3


class Replicas:
    def __init__(self, config: Membership, stub_url: str, prefix: str) -> None:
        self.config = config
        self.stub_url = stub_url
        self.prefix = prefix
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def env(self, index: int) -> dict[str, str]:
        env = {
            **os.environ,
            "ORRERY_CHAT_PORT": str(free_port()),
            "ORRERY_CHAT_CONSUMER_GROUP_PREFIX": self.prefix,
            "ORRERY_CHAT_LOG_LEVEL": "WARNING",
            "ORRERY_LLM_PROVIDERS__STUB__BASE_URL": self.stub_url,
            "ORRERY_LLM_DEFAULT_PROVIDER": "stub",
            "ORRERY_LLM_ROUTES__CHAT": '["stub/orrery-chat"]',
            "ORRERY_LLM_ROUTES__SUMMARY": '["stub/orrery-summary"]',
            "ORRERY_KAFKA_SESSION_TIMEOUT_MS": str(self.config.session_timeout_ms),
            "ORRERY_KAFKA_HEARTBEAT_INTERVAL_MS": str(self.config.heartbeat_interval_ms),
        }
        if self.config.static:
            env["ORRERY_KAFKA_GROUP_INSTANCE_ID"] = f"{self.prefix}-chat-{index}"
        return env

    def start(self, index: int) -> None:
        env = self.env(index)
        url = f"http://127.0.0.1:{env['ORRERY_CHAT_PORT']}/readyz"
        self.procs[index] = start_module("orrery_chat", env, url, f"bench-failover-chat-{index}.log")

    def kill(self, index: int) -> int:
        killed_at_ms = int(time.time() * 1000)
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait(10)
        return killed_at_ms

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop(proc)


async def scenario(run: Run, config: Membership, replicas: int, restart_in_place: bool) -> list[float]:
    prefix = f"bench-failover-{uuid.uuid4().hex[:8]}"
    await seed_groups_at_end(
        KafkaSettings().bootstrap_servers,
        {f"{prefix}.turns": [ChatTurnRequested.TOPIC], f"{prefix}.characters": [CharacterCreated.TOPIC]},
    )
    group = Replicas(config, run.stub_url, prefix)
    samples: list[float] = []
    try:
        for index in range(replicas):
            group.start(index)
        await asyncio.sleep(1)
        await run.introduce()
        # A first round settles the group (every replica has its partitions) before anything is timed.
        await run.wait(await run.publish_turns(), ended)
        for trial in range(TRIALS):
            victim = trial % replicas
            turn_ids = await run.publish_turns()
            await run.wait(turn_ids, streaming)
            killed_at = group.kill(victim)
            if restart_in_place:
                await asyncio.to_thread(group.start, victim)
            await run.wait(turn_ids, ended, timeout=120)
            samples += await run.recovery_ms(turn_ids, killed_at)
            if not restart_in_place:
                await asyncio.to_thread(group.start, victim)
                await run.wait(await run.publish_turns(), ended)  # settled again
    finally:
        group.stop_all()
    return samples


def report(title: str, results: dict[str, list[float]], goal_ms: float) -> None:
    print(f"  {title} (goal: p99 <= {goal_ms / 1000:.0f} s)")
    base = results[CONFIGS[0].name]
    for name, samples in results.items():
        if not samples:
            print(f"    {name}: no turn was interrupted")
            continue
        p50, p99 = statistics.median(samples), pct(samples, 0.99)
        ratio = f"  ({p99 / pct(base, 0.99):.2f}x the baseline's p99)" if base and name != CONFIGS[0].name else ""
        print(f"    {name}: {len(samples)} turns, p50 {p50 / 1000:.1f} s, p99 {p99 / 1000:.1f} s{ratio}")


async def main_async(stub_url: str) -> None:
    run = Run(stub_url)
    await run.broker.start()
    try:
        alive: dict[str, list[float]] = {}
        in_place: dict[str, list[float]] = {}
        for config in CONFIGS:
            alive[config.name] = await scenario(run, config, replicas=2, restart_in_place=False)
            in_place[config.name] = await scenario(run, config, replicas=1, restart_in_place=True)
    finally:
        await run.broker.stop()
        await run.redis.aclose()
    print("chat failover: a replica SIGKILLed mid-reply -> the restarted reply's first delta")
    report("another replica alive", alive, 7_000)
    report("the process restarted in place", in_place, 3_000)


def main() -> None:
    stub_port = free_port()
    stub = start_module(
        "orrery_llm_stub",
        {
            **os.environ,
            "ORRERY_STUB_PORT": str(stub_port),
            "ORRERY_STUB_TTFT_MS": "100",
            "ORRERY_STUB_TOKENS_PER_SECOND": "20",
            "ORRERY_STUB_REPLY_TOKENS": "80",
            "ORRERY_STUB_LOG_LEVEL": "warning",
        },
        f"http://127.0.0.1:{stub_port}/_stub/health",
        "bench-failover-stub.log",
    )
    try:
        asyncio.run(asyncio.wait_for(main_async(f"http://127.0.0.1:{stub_port}/v1"), 1800))
    finally:
        stop(stub)


if __name__ == "__main__":
    main()
