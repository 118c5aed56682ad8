"""Character generation: characters/s per process, and the latency a spin adds on top of the LLM's own time.

Starts its own LLM stub (zero think time) and one character-gen process with the default offline portrait
chain (the procedural portrait), on the local infrastructure, then:
1. throughput: 200 spins of 200 users published at once; characters/s until every character.created.v1 is
   consumed. Baseline: the same 200 persona requests sent straight to the stub through the LLM client, as many
   at a time as the service handles (its concurrency), so the ratio is "the service" over "the stub alone".
2. latency: 100 spins one at a time, publish → character.created.v1 consumed, p50 and p99. Baseline in the same
   run: the stub calls alone (the identical structured persona request through the LLM client, one at a time).
   Added = spin latency - baseline: Kafka in and out (outbox relay), Postgres, trait draw and the portrait.
The service gets a throwaway schema (dropped afterwards) when a Postgres superuser is reachable, as it is on the
local infrastructure; otherwise it uses its own schema, deletes the bench's characters afterwards, and refuses to
run while another character-gen (e.g. `make run`) is up, since that one would share its outbox.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orrery_character_gen.domain import PersonaDraft, Traits, persona_messages
from orrery_character_gen.procedural import ProceduralPortraits
from orrery_character_gen.settings import CharacterGenSettings
from orrery_shared.events import CharacterCreated, CharacterFailed, CharacterRequested, UserMerged
from orrery_shared.kafka import encode, event_headers
from orrery_shared.llm import LLMClient, LLMSettings, ProviderProfile
from orrery_shared.settings import KafkaSettings
from tests.support.kafka_groups import seed_groups_at_end

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 8
THROUGHPUT_SPINS = 200
LATENCY_SPINS = 100
TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    module: str, env: dict[str, str], ready: str, log: str, args: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    out = open(ROOT / ".orrery" / log, "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{module} exited; see .orrery/{log}")
        try:
            if httpx.get(ready, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"{module} not ready; see .orrery/{log}")
        time.sleep(0.2)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Bench:
    def __init__(self, stub_url: str, users: list[uuid.UUID]) -> None:
        self.stub_url = stub_url
        self.kafka = KafkaSettings()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap_servers, acks="all", enable_idempotence=True
        )
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka.bootstrap_servers, enable_auto_commit=False)
        self.arrived: dict[uuid.UUID, float] = {}
        self.failed: dict[uuid.UUID, str] = {}
        self.users = users
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bench:
        await self.producer.start()
        await self.consumer.start()
        partitions = [
            TopicPartition(t.TOPIC, p) for t in (CharacterCreated, CharacterFailed) for p in range(t.PARTITIONS)
        ]
        self.consumer.assign(partitions)
        for partition, offset in (await self.consumer.end_offsets(partitions)).items():
            self.consumer.seek(partition, offset)
        self.task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _collect(self) -> None:
        async for record in self.consumer:
            now = time.perf_counter()
            if record.topic == CharacterCreated.TOPIC:
                created = CharacterCreated.model_validate_json(record.value or b"")
                if created.request_id is not None:
                    self.arrived[created.request_id] = now
            else:
                failed = CharacterFailed.model_validate_json(record.value or b"")
                self.failed[failed.request_id] = failed.reason

    async def spin(self) -> tuple[uuid.UUID, float]:
        user = uuid.uuid4()
        self.users.append(user)
        event = CharacterRequested(request_id=uuid.uuid4(), user_id=user)
        headers = [(k, v.encode()) for k, v in event_headers(event).items()]
        sent = time.perf_counter()
        await self.producer.send(event.TOPIC, encode(event), key=event.partition_key().encode(), headers=headers)
        return event.request_id, sent

    async def wait(self, request_ids: list[uuid.UUID]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while any(r not in self.arrived for r in request_ids):
            failed = [self.failed[r] for r in request_ids if r in self.failed]
            if failed:
                raise SystemExit(f"{len(failed)} spins failed, e.g. {failed[0]}")
            if time.monotonic() > deadline:
                raise SystemExit("spins did not complete in time")
            await asyncio.sleep(0.001)

    async def throughput(self, count: int) -> float:
        sends = [await self.spin() for _ in range(count)]
        await self.producer.flush()
        started = min(sent for _, sent in sends)
        await self.wait([r for r, _ in sends])
        return count / (max(self.arrived[r] for r, _ in sends) - started)

    async def latency(self, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            request_id, sent = await self.spin()
            await self.producer.flush()
            await self.wait([request_id])
            samples.append((self.arrived[request_id] - sent) * 1000)
        return samples

    async def stub_alone(self, count: int, concurrency: int) -> tuple[list[float], float]:
        """The service's persona request straight to the stub: one-at-a-time times, and calls/s at `concurrency`."""
        settings = LLMSettings(providers={"stub": ProviderProfile(base_url=self.stub_url)}, default_provider="stub")
        traits = Traits("female", "cyborg", "galactic emperor")
        gate = asyncio.Semaphore(concurrency)
        async with LLMClient(settings) as llm:

            async def call() -> float:
                async with gate:
                    sent = time.perf_counter()
                    await llm.complete_structured(
                        persona_messages(traits),  # type: ignore[arg-type]
                        PersonaDraft,
                        task="persona",
                        max_tokens=1_500,
                        temperature=0.9,
                    )
                    return (time.perf_counter() - sent) * 1000

            for _ in range(10):
                await call()
            started = time.perf_counter()
            await asyncio.gather(*(call() for _ in range(count)))
            rate = count / (time.perf_counter() - started)
            sequential = [await call() for _ in range(LATENCY_SPINS)]
        return sequential, rate


def portrait_ms(count: int = 30) -> tuple[float, float]:
    """Milliseconds to draw one procedural portrait as SVG (every spin) and as PNG (only for a PNG card)."""
    traits = Traits("male", "insectoid Mantid", "space pirate")
    portraits = ProceduralPortraits()
    started = time.perf_counter()
    for seed in range(count):
        portraits.svg(traits, seed)
    svg = (time.perf_counter() - started) / count * 1000
    started = time.perf_counter()
    for seed in range(count):
        portraits.png(traits, seed)
    return svg, (time.perf_counter() - started) / count * 1000


class Schema:
    """Where the bench's service stores its characters.

    A throwaway schema with a role of its own when a Postgres superuser is reachable (locally it is), so
    nothing else sharing the service's schema (and its outbox) can interfere, and nothing is left behind;
    otherwise the service's own schema, from which the bench's characters are deleted afterwards.
    """

    def __init__(self) -> None:
        settings = CharacterGenSettings()
        self.url, self.name, self.admin_url = settings.database_url, settings.db_schema, None
        port = os.environ.get("ORRERY_PG_PORT", "55432")
        admin = os.environ.get("ORRERY_TEST_POSTGRES_ADMIN_URL", f"postgresql://postgres@127.0.0.1:{port}/orrery")
        name = "bench_chargen_" + uuid.uuid4().hex[:8]
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
                conn.execute(f"GRANT CONNECT ON DATABASE orrery TO {name}")
                conn.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
        except psycopg.Error:
            return
        host = admin.split("@", 1)[1].split("/", 1)[0]
        self.url, self.name, self.admin_url = f"postgresql+psycopg://{name}:{name}@{host}/orrery", name, admin

    @property
    def env(self) -> dict[str, str]:
        return {"ORRERY_CHARACTER_GEN_DATABASE_URL": self.url, "ORRERY_CHARACTER_GEN_DB_SCHEMA": self.name}

    def drop(self, users: list[uuid.UUID]) -> None:
        if self.admin_url is None:
            url = self.url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(url, autocommit=True, options=f"-csearch_path={self.name}") as conn:
                # The spin outcomes stay: a consumer group that later replays the topic then skips these spins.
                conn.execute("DELETE FROM characters WHERE owner_user_id = ANY(%s)", (users,))
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.name} CASCADE")
            conn.execute(f"DROP OWNED BY {self.name}")
            conn.execute(f"DROP ROLE {self.name}")


async def run(stub_url: str, users: list[uuid.UUID]) -> None:
    async with Bench(stub_url, users) as bench:
        await bench.throughput(20)  # warm-up: connections, pools, the group's partitions assigned
        per_second = await bench.throughput(THROUGHPUT_SPINS)
        spin_ms = await bench.latency(LATENCY_SPINS)
        stub_ms, stub_rate = await bench.stub_alone(THROUGHPUT_SPINS, CONCURRENCY)
    svg_ms, png_ms = portrait_ms()
    p50, p99 = statistics.median(spin_ms), pct(spin_ms, 0.99)
    b50, b99 = statistics.median(stub_ms), pct(stub_ms, 0.99)
    print(f"character-gen (one process, concurrency {CONCURRENCY}, procedural portraits, stub with zero think time)")
    print(
        f"  throughput: {per_second:,.1f} characters/s  "
        f"(stub alone: {stub_rate:,.1f} persona calls/s, ratio {per_second / stub_rate:.2f})"
    )
    print(f"  spin -> character.created.v1: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"  baseline (the persona call to the stub alone): p50 {b50:.1f} ms, p99 {b99:.1f} ms")
    print(f"  added by the service: p50 {p50 - b50:.1f} ms, p99 {p99 - b99:.1f} ms  (ratio {p50 / b50:.2f} at p50)")
    print(f"  procedural portrait: {svg_ms:.1f} ms as SVG (each spin), {png_ms:.1f} ms as PNG (only for card.png)")


def platform_running(port: int = CharacterGenSettings().port) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    schema = Schema()
    if schema.admin_url is None and platform_running():
        raise SystemExit("a character-gen already listens on its port (make run?): stop it first, it shares the schema")
    stub_port, port = free_port(), free_port()
    env = {**os.environ}
    stub = start(
        "orrery_llm_stub",
        {
            **env,
            "ORRERY_STUB_PORT": str(stub_port),
            "ORRERY_STUB_TTFT_MS": "0",
            "ORRERY_STUB_TOKENS_PER_SECOND": "0",
            "ORRERY_STUB_RECORD_REQUESTS": "false",
            "ORRERY_STUB_LOG_LEVEL": "warning",
        },
        f"http://127.0.0.1:{stub_port}/_stub/health",
        "bench-stub.log",
    )
    stub_url = f"http://127.0.0.1:{stub_port}/v1"
    group = f"bench-character-gen-{uuid.uuid4().hex[:8]}"
    # A throwaway group starting at the end of the topics: only this run's spins count.
    asyncio.run(
        seed_groups_at_end(KafkaSettings().bootstrap_servers, {group: [CharacterRequested.TOPIC, UserMerged.TOPIC]})
    )
    service_env = {
        **env,
        "ORRERY_CHARACTER_GEN_PORT": str(port),
        "ORRERY_CHARACTER_GEN_CONSUMER_GROUP": group,
        "ORRERY_CHARACTER_GEN_CONCURRENCY": str(CONCURRENCY),
        "ORRERY_CHARACTER_GEN_LOG_LEVEL": "WARNING",
        "ORRERY_LLM_PROVIDERS__STUB__BASE_URL": stub_url,
        "ORRERY_LLM_DEFAULT_PROVIDER": "stub",
        **schema.env,
    }
    users: list[uuid.UUID] = []
    service: subprocess.Popen[bytes] | None = None
    try:
        migrate = [sys.executable, "-m", "orrery_character_gen", "migrate"]
        if subprocess.run(migrate, env=service_env, check=False, capture_output=True).returncode != 0:
            raise SystemExit(f"migrating schema {schema.name} failed")
        service = start(
            "orrery_character_gen", service_env, f"http://127.0.0.1:{port}/readyz", "bench-character-gen.log"
        )
        asyncio.run(asyncio.wait_for(run(stub_url, users), 110))
    finally:
        for proc in (service, stub):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        schema.drop(users)


if __name__ == "__main__":
    main()
