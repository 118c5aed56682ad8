"""The dossier service's smart update and consumer throughput, on the local broker, database and LLM stub.

1. Extraction calls per 100 realistic turns: several generated story-building chats (story statements, questions,
   chit-chat, greetings, emojis) go through the real service one turn at a time, each absorbed (and any extraction
   it triggered finished) before the next, which is the least batching a live chat can get. Calls are counted by
   the stub's request log; turns still waiting at the end add one call per project (the extraction the waiting
   limit would trigger). Goal: at most 20 per 100 turns.
2. Events per second the consumer absorbs when no extraction is needed (triggers set out of reach): the same
   pre-published events through the dossier's intake and through a no-op handler with the same
   `subscribe(..., concurrency=N)` machinery (the baseline), in the same run.

Needs the local infrastructure (`make infra-up`); uses its own schema (made with the superuser URL in
ORRERY_BENCH_POSTGRES_ADMIN_URL, default postgresql://postgres@127.0.0.1:55432/orrery), its own topics and its
own stub process, all removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import create_async_engine

from orrery_dossier.app import Topics, create_app
from orrery_dossier.migrations import VERSIONS
from orrery_dossier.settings import DossierSettings
from orrery_shared.auth import JwtVerifier
from orrery_shared.db.migrations import upgrade
from orrery_shared.events import ChatTurnCompleted, MessageRecord, TokenUsage, TopicSpec, UserMerged, dlq_topic
from orrery_shared.kafka import encode, ensure_topics, event_headers, flush_offsets, make_broker, subscribe
from orrery_shared.llm import LLMClient, LLMSettings, ProviderProfile
from orrery_shared.settings import KafkaSettings

SEED = 7
CONVERSATIONS = 5
TURNS_PER_CONVERSATION = 100
GOAL_PER_100 = 20
ABSORB_EVENTS = 10_000
ROUNDS = 2
ABSORB_PROJECTS = 400
CONCURRENCY = 16
TIMEOUT = 100

# --- a realistic story-building chat ------------------------------------------------------------------

NAMES = ["Mara", "Lena", "Oberon", "Kade", "Vex", "Ilya", "Soren", "Tamsin", "Rhea", "Dax", "Juno", "Bram"]
PLACES = ["Titan", "Europa", "the Glass City", "Port Vell", "Ganymede", "the Ash Coast", "Kepler Station", "Noctis"]
ROLES = ["smuggler", "pilot", "medic", "thief", "priestess", "mechanic", "courier", "soldier", "archivist"]
RELATIONS = ["sister", "brother", "mentor", "rival", "father", "mother", "partner", "old friend"]
OBJECTS = ["star map", "reactor key", "crown", "ledger", "seed vault codes", "letters"]
THEMES = ["trust", "betrayal", "grief", "freedom", "family", "redemption", "greed", "home"]

GREETINGS = ["hi!", "hello there", "hey :)", "good morning!", "hi again", "bye for now", "gotta go, see you later"]
CHATTER = [
    "ok", "lol", "haha", "nice", "cool", "wow", "😂", "👍", "yes", "no way", "tell me more", "go on", "interesting",
    "that's great", "hmm", "really?", "omg", "love it", "sure", "and then?", "haha that's funny", "ok ok", "🔥🔥",
]  # fmt: skip
QUESTIONS = [
    "what happened next?", "why did you do that?", "how did you feel about it?", "where are you now?",
    "can you describe it?", "what does it look like?", "who else was there?", "are you scared?",
    "what do you want most?", "is that true?", "do you miss home?", "what would you do differently?",
]  # fmt: skip
META = [
    "let's make it darker", "maybe the ending should be happier", "I like where this is going",
    "can we skip ahead a bit?", "what if the twist is that {name} dies?", "make the dialogue funnier",
    "I think the story needs more tension", "should we add a romance subplot?",
]  # fmt: skip
STORY = [
    "My protagonist is {name}, a {role} who grew up on {place}.",
    "{name} has a {relation} called {name2} who never forgave her.",
    "In the next chapter {name} travels to {place} to find the {object}.",
    "{name2} betrays {name} and steals the {object}.",
    "The story is really about {theme} and {theme2}.",
    "I want {name} to discover that {name2} is secretly her {relation}.",
    "Let's say the war on {place} ended ten years ago and {name} lost everything.",
    "{name} is brave but hides her fear from everyone, even {name2}.",
    "The villain is called {name2} and rules over {place}.",
    "At the end {name} returns to {place} to face {name2}.",
    "{name2} used to be a {role} before the uprising on {place}.",
    "Then {name} and {name2} escape from {place} on a stolen ship.",
]
REPLIES = [
    "Ah... I remember the nights on {place}. The sky there never truly darkens.",
    "I never told anyone this, but {name2} once saved my life.",
    "That is a hard question. I think fear makes us honest.",
    "Ha! You always make me laugh.",
    "Let me tell you about {place}: the air smells of rust and rain, and the markets never close.",
    "If you ask me, {name} was always braver than she believed.",
    "I do not know. Some doors are better left closed.",
    "They say the old tunnels under {place} still hold the {object}.",
]
MIX = [("greeting", 0.08), ("chatter", 0.27), ("question", 0.20), ("story", 0.35), ("meta", 0.10)]


class Conversation:
    """One story-building chat: names and places are introduced over time and then keep coming back."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names = rng.sample(NAMES, len(NAMES))
        self.places = rng.sample(PLACES, len(PLACES))
        self.known_names, self.known_places = 1, 1

    def _pick(self, pool: list[str], known: int) -> tuple[str, int]:
        if known < len(pool) and self.rng.random() < 0.25:
            known += 1  # someone or somewhere new enters the story
        return pool[self.rng.randrange(known)], known

    def _fill(self, template: str) -> str:
        name, self.known_names = self._pick(self.names, self.known_names)
        name2, self.known_names = self._pick(self.names, self.known_names)
        place, self.known_places = self._pick(self.places, self.known_places)
        rng = self.rng
        theme, theme2 = rng.sample(THEMES, 2)
        return template.format(
            name=name,
            name2=name2 if name2 != name else self.names[(self.names.index(name) + 1) % len(self.names)],
            place=place,
            role=rng.choice(ROLES),
            relation=rng.choice(RELATIONS),
            object=rng.choice(OBJECTS),
            theme=theme,
            theme2=theme2,
        )

    def next_turn(self) -> tuple[str, str]:
        """The user's message and the character's reply."""
        kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        pools = {"greeting": GREETINGS, "chatter": CHATTER, "question": QUESTIONS, "story": STORY, "meta": META}
        user_text = self._fill(self.rng.choice(pools[kind]))
        return user_text, self._fill(self.rng.choice(REPLIES))


def completed_turn(user_id: uuid.UUID, project_id: uuid.UUID, user_text: str, reply: str) -> ChatTurnCompleted:
    now = datetime.now(UTC)
    return ChatTurnCompleted(
        turn_id=uuid.uuid4(),
        conversation_id=project_id,
        user_id=user_id,
        character_id=uuid.uuid4(),
        project_id=project_id,
        user_message=MessageRecord(message_id=uuid.uuid4(), content=user_text, created_at=now),
        assistant_message=MessageRecord(message_id=uuid.uuid4(), content=reply, created_at=now),
        usage=TokenUsage(prompt_tokens=100, completion_tokens=80, model="stub"),
    )


# --- throwaway infrastructure -------------------------------------------------------------------------


@asynccontextmanager
async def scratch_schema(admin_url: str, role_host_port: tuple[str, int]) -> AsyncIterator[tuple[str, str]]:
    name = "dossier_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
        admin.execute(f"GRANT CONNECT ON DATABASE orrery TO {name}")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    host, port = role_host_port
    url = f"postgresql+psycopg://{name}:{name}@{host}:{port}/orrery"
    try:
        await asyncio.to_thread(upgrade, url, name, VERSIONS)
        yield url, name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")
            admin.execute(f"DROP OWNED BY {name}")
            admin.execute(f"DROP ROLE {name}")


@asynccontextmanager
async def llm_stub() -> AsyncIterator[str]:
    """The project's stub server on a free port, answering at once; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "ORRERY_STUB_HOST": "127.0.0.1",
        "ORRERY_STUB_PORT": str(port),
        "ORRERY_STUB_TTFT_MS": "0",
        "ORRERY_STUB_TOKENS_PER_SECOND": "0",
        "ORRERY_STUB_MAX_RECORDED_REQUESTS": "10000",
        "ORRERY_STUB_LOG_LEVEL": "warning",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orrery_llm_stub", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    root = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1.0) as http:
            deadline = time.monotonic() + 20
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"the LLM stub exited with {process.returncode}")
                try:
                    if (await http.get(f"{root}/_stub/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the LLM stub did not start")
                await asyncio.sleep(0.05)
        yield f"{root}/v1"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
        log.close()


async def stub_chat_requests(base_url: str) -> int:
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.get(
            base_url.removesuffix("/v1") + "/_stub/requests", params={"path": "/v1/chat/completions"}
        )
        return len(response.json()["requests"])


def private(base: type[ChatTurnCompleted] | type[UserMerged], run: str) -> Any:
    return type(
        f"Bench{base.__name__}", (base,), {"TOPIC": f"bench.dossier.{run}.{base.TOPIC}", "__module__": __name__}
    )


@asynccontextmanager
async def private_topics(kafka: KafkaSettings) -> AsyncIterator[Topics]:
    run = uuid.uuid4().hex[:8]
    topics = Topics(turns=private(ChatTurnCompleted, run), merges=private(UserMerged, run))
    specs = [TopicSpec(topics.turns.TOPIC, ChatTurnCompleted.PARTITIONS), TopicSpec(topics.merges.TOPIC, 6)]
    specs += [TopicSpec(dlq_topic(s.name), 3) for s in list(specs)]
    await ensure_topics(kafka)
    await ensure_topics(kafka, specs)
    try:
        yield topics
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers.split(","))
        await admin.start()
        try:
            await admin.delete_topics([s.name for s in specs])
        finally:
            await admin.close()


def consumed(topic: str, group: str) -> float:
    return (
        REGISTRY.get_sample_value("orrery_events_consumed_total", {"topic": topic, "group": group, "outcome": "ok"})
        or 0
    )


def turns_decided(decision: str) -> float:
    return REGISTRY.get_sample_value("orrery_dossier_turns_total", {"decision": decision}) or 0


async def wait_until(check: Callable[[], Any], seconds: float = TIMEOUT, every: float = 0.002) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark stalled")
        await asyncio.sleep(every)


@dataclass
class Infra:
    kafka: KafkaSettings
    db_url: str
    schema: str
    stub_url: str
    topics: Topics


def service_settings(infra: Infra, prefix: str, **overrides: Any) -> DossierSettings:
    return DossierSettings(
        database_url=infra.db_url,
        db_schema=infra.schema,
        consumer_group_prefix=prefix,
        consumer_concurrency=CONCURRENCY,
        kafka=infra.kafka,
        poll_seconds=0.05,
        **overrides,
    )


def stub_llm(infra: Infra) -> LLMClient:
    return LLMClient(LLMSettings(providers={"stub": ProviderProfile(base_url=infra.stub_url)}, default_provider="stub"))


# --- 1. extraction calls per 100 turns ----------------------------------------------------------------


async def extraction_calls(infra: Infra) -> dict[str, float]:
    prefix = "bench-dossier-" + uuid.uuid4().hex[:8]
    group = f"{prefix}.turns"
    app = create_app(
        service_settings(infra, prefix), llm=stub_llm(infra), verifier=JwtVerifier.from_settings(), topics=infra.topics
    )
    producer = make_broker(infra.kafka, "bench-dossier")
    engine = create_async_engine(infra.db_url, connect_args={"options": f"-csearch_path={infra.schema}"})
    rng = random.Random(SEED)
    chats = [(uuid.uuid4(), uuid.uuid4(), Conversation(rng)) for _ in range(CONVERSATIONS)]
    before = {d: turns_decided(d) for d in ("trivial", "low_signal", "kept", "due")}
    calls_before = await stub_chat_requests(infra.stub_url)

    async def idle() -> bool:
        async with engine.connect() as conn:
            busy = await conn.scalar(
                sa.text("SELECT count(*) FROM dossiers WHERE due_at <= now() OR lease_until > now()")
            )
        return bool(busy == 0)

    await producer.start()
    published = 0
    try:
        async with app.router.lifespan_context(app):
            for _ in range(TURNS_PER_CONVERSATION):
                for user_id, project_id, chat in chats:
                    event = completed_turn(user_id, project_id, *chat.next_turn())
                    await producer.publish(
                        encode(event),
                        infra.topics.turns.TOPIC,
                        key=event.partition_key().encode(),
                        headers=event_headers(event),
                    )
                    published += 1

                async def absorbed(target: int = published) -> bool:
                    return consumed(infra.topics.turns.TOPIC, group) >= target

                await wait_until(absorbed)
                await wait_until(idle, every=0.01)
            async with engine.connect() as conn:
                leftovers = await conn.scalar(sa.text("SELECT count(*) FROM dossiers WHERE pending_count > 0"))
    finally:
        await producer.stop()
        await engine.dispose()
    calls = await stub_chat_requests(infra.stub_url) - calls_before
    decided = {d: turns_decided(d) - before[d] for d in before}
    return {"turns": published, "calls": calls, "leftovers": float(leftovers or 0), **decided}


# --- 2. events absorbed per second without extraction -------------------------------------------------


async def absorption(infra: Infra) -> tuple[float, float, int]:
    rng = random.Random(SEED + 1)
    projects = [(uuid.uuid4(), uuid.uuid4(), Conversation(rng)) for _ in range(ABSORB_PROJECTS)]
    producer = make_broker(infra.kafka, "bench-dossier")
    await producer.start()
    try:
        pending = []
        for i in range(ABSORB_EVENTS):
            user_id, project_id, chat = projects[i % len(projects)]
            event = completed_turn(user_id, project_id, *chat.next_turn())
            pending.append(
                await producer.publish(
                    encode(event),
                    infra.topics.turns.TOPIC,
                    key=event.partition_key().encode(),
                    headers=event_headers(event),
                    no_confirm=True,
                )
            )
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()

    async def rate(start: Callable[[], Any], stop: Callable[[], Any], group: str) -> float:
        await start()
        try:
            topic = infra.topics.turns.TOPIC

            async def first() -> bool:
                return consumed(topic, group) >= 1

            await wait_until(first, every=0.001)
            began = time.perf_counter()

            async def all_in() -> bool:
                return consumed(topic, group) >= ABSORB_EVENTS

            await wait_until(all_in, every=0.005)
            return (ABSORB_EVENTS - 1) / (time.perf_counter() - began)
        finally:
            await stop()

    async def baseline_round() -> float:
        # The same events, the same subscribe machinery and concurrency, a handler that does nothing.
        group = "bench-noop-" + uuid.uuid4().hex[:8]
        broker = make_broker(infra.kafka, "bench-noop")

        async def noop(_: ChatTurnCompleted) -> None:
            return None

        subscribe(broker, infra.topics.turns, group, noop, concurrency=CONCURRENCY)

        async def stop_broker() -> None:
            await flush_offsets(broker)
            await broker.stop()

        return await rate(broker.start, stop_broker, group)

    async def dossier_round() -> float:
        # The dossier's intake with every extraction trigger out of reach: only scoring and storing remain.
        engine = create_async_engine(infra.db_url, connect_args={"options": f"-csearch_path={infra.schema}"})
        async with engine.begin() as conn:
            await conn.execute(sa.text("TRUNCATE dossiers, pending_turns, inbox CASCADE"))
        await engine.dispose()
        prefix = "bench-dossier-" + uuid.uuid4().hex[:8]
        never = {"extract_score": 1e12, "max_pending_turns": 10**9, "max_wait_seconds": 1e9, "extraction_workers": 0}
        app = create_app(
            service_settings(infra, prefix, db_pool_size=20, **never),
            llm=stub_llm(infra),
            verifier=JwtVerifier.from_settings(),
            topics=infra.topics,
        )
        lifespan = app.router.lifespan_context(app)
        return await rate(lifespan.__aenter__, lambda: lifespan.__aexit__(None, None, None), f"{prefix}.turns")

    # Best of alternating rounds: the machine may be busy with other work for part of a round.
    baselines, dossiers = [], []
    for _ in range(ROUNDS):
        baselines.append(await baseline_round())
        dossiers.append(await dossier_round())
    return max(dossiers), max(baselines), ABSORB_EVENTS


async def main() -> int:
    kafka = KafkaSettings()
    admin_url = os.environ.get("ORRERY_BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:55432/orrery")
    parts = urlsplit(admin_url)
    started = time.monotonic()
    async with (
        scratch_schema(admin_url, (parts.hostname or "127.0.0.1", parts.port or 5432)) as (db_url, schema),
        llm_stub() as stub_url,
        private_topics(kafka) as topics,
    ):
        infra = Infra(kafka, db_url, schema, stub_url, topics)
        calls = await extraction_calls(infra)
        dossier_rate, baseline_rate, events = await absorption(infra)

    turns, during, leftovers = calls["turns"], calls["calls"], calls["leftovers"]
    per_100 = (during + leftovers) * 100 / turns
    print(f"dossier smart update: {turns:.0f} realistic turns in {CONVERSATIONS} conversations (seed {SEED})")
    print(
        f"  turns: {calls['trivial']:.0f} chit-chat, {calls['low_signal']:.0f} low signal, "
        f"{calls['kept'] + calls['due']:.0f} kept for extraction"
    )
    print(
        f"  extraction calls: {during:.0f} during the run + {leftovers:.0f} for turns still waiting "
        f"= {per_100:.1f} per 100 turns (one call per turn would be 100)"
    )
    print(f"  goal: <= {GOAL_PER_100} per 100 turns -> {'met' if per_100 <= GOAL_PER_100 else 'NOT met'}")
    print(
        f"absorption without extraction: {events:,} pre-published turns, {ABSORB_PROJECTS} projects, "
        f"concurrency {CONCURRENCY}, best of {ROUNDS} rounds each"
    )
    print(f"{'':24}{'dossier':>12}{'no-op':>12}{'ratio':>8}")
    print(f"{'events/s':24}{dossier_rate:12,.0f}{baseline_rate:12,.0f}{dossier_rate / baseline_rate:8.2f}")
    print(f"(ran in {time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
