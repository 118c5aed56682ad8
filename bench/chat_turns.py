"""Chat service throughput, the latency it adds to the first token, and prompt size against full history.

Starts its own LLM stub (no think time, unpaced tokens) and one chat process on the local infrastructure, then:
1. turns/s: 400 turns over 100 conversations published at once; time until every turn's `done` is in Redis.
   Then what was stored is checked: every turn has exactly one assistant message, whose text is what its
   stream showed after its last restart (the run stops if not).
2. added time to first delta: 100 turns one at a time. Chat's histogram `orrery_chat_first_delta_seconds`
   (taking the turn -> its first delta in Redis) against the stub's own time to first token for the very
   requests chat sent during those turns, each replayed twice with a bare HTTP client right after its turn and
   the lower time kept (the prompt's size is the stub's work, not chat's; right after, so both are measured
   under the same load).
   Added = chat's time - the stub's, p50 and p99. Also printed: publish -> first delta as
   the bench sees it, against a publish -> consume round trip through the same Kafka helpers plus the stub.
3. prompt tokens per turn for a 200-turn conversation, against sending the whole history every turn
   (what the prompt would be without memory), both counted with the same estimator.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from redis.asyncio import Redis

from orrery_chat.domain import MESSAGE_OVERHEAD
from orrery_chat.settings import ChatSettings
from orrery_shared.events import CharacterCreated, ChatTurnRequested, UserRegistered
from orrery_shared.kafka import make_broker, publish_event, subscribe
from orrery_shared.llm.tokens import estimate_tokens
from orrery_shared.settings import KafkaSettings, RedisSettings
from tests.support.kafka_groups import seed_groups_at_end
from tests.support.processes import free_port, start_module, stop

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_TURNS = 400  # over 100 conversations, 4 turns each


# The keys among KEYS whose stream has not ended yet (no entries, or a last entry that is neither done nor error).
STILL_STREAMING = """
local pending = {}
for _, key in ipairs(KEYS) do
    local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
    local ended = false
    if #last > 0 then
        local fields = last[1][2]
        for i = 1, #fields, 2 do
            if fields[i] == 'type' and (fields[i + 1] == 'done' or fields[i + 1] == 'error') then
                ended = true
            end
        end
    end
    if not ended then
        table.insert(pending, key)
    end
end
return pending
"""


def first_text(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices") or [{}]
    return str((choices[0].get("delta") or {}).get("content") or "")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def first_delta_buckets(metrics_url: str) -> dict[float, float]:
    """Chat's cumulative `orrery_chat_first_delta_seconds` buckets: upper bound (s) -> count."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(metrics_url)).text
    buckets = {}
    for line in text.splitlines():
        if line.startswith("orrery_chat_first_delta_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The q-quantile (ms) of what was observed between two scrapes, interpolated within its bucket."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower * 1000
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return (lower + (bound - lower) * share) * 1000
        lower, below = bound, cumulative
    return lower * 1000


async def stub_ttft(client: httpx.AsyncClient, request: dict[str, Any]) -> float:
    """The stub's time to first token (ms) for a request it recorded, sent again as it was."""
    body = {**request["body"], "stream": True}
    sent = time.perf_counter()
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {") and first_text(json.loads(line[6:])):
                break
    return (time.perf_counter() - sent) * 1000


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Bench:
    def __init__(self, stub_url: str) -> None:
        self.stub_url = stub_url
        self.broker = make_broker(KafkaSettings(), "bench")
        self.redis = Redis.from_url(RedisSettings().url)
        self.user = uuid.uuid4()

    async def character(self) -> CharacterCreated:
        event = CharacterCreated(
            character_id=uuid.uuid4(),
            owner_user_id=self.user,
            name="Vexa Moor",
            planet="Tessaly",
            sex="female",
            species="Lumen",
            archetype="xenobotanist",
            personality="curious and patient",
            backstory="Catalogued ten thousand spore-songs.",
            speaking_style="gentle, precise",
            greeting="Mind the spores.",
            portrait_url="/p",
            portrait_provider="procedural",
        )
        await publish_event(self.broker, event)
        await asyncio.sleep(1.0)  # let chat's projection take it before the first turn
        return event

    def turn(self, conversation: uuid.UUID, character: uuid.UUID, text: str) -> ChatTurnRequested:
        return ChatTurnRequested(
            turn_id=uuid.uuid4(), conversation_id=conversation, user_id=self.user, character_id=character, content=text
        )

    async def wait_done(self, *turn_ids: uuid.UUID, timeout: float = 120) -> None:
        """Poll every pending turn's stream, in one command, until each has ended. Redis looks at the streams'
        last entries itself: parsing hundreds of replies every few milliseconds took the benchmark a third of a
        core, which this machine's other processes, chat among them, went without."""
        pending, deadline = [f"turn:{t}" for t in turn_ids], time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pending = [key.decode() for key in await self.redis.eval(STILL_STREAMING, len(pending), *pending)]
            if pending:
                await asyncio.sleep(0.005)
        if pending:
            raise SystemExit(f"{len(pending)} turns did not finish")

    async def first_delta(self, turn_id: uuid.UUID) -> float:
        key = f"turn:{turn_id}"
        while True:
            got = await self.redis.xread({key: "0-0"}, count=1, block=5000)
            if got:
                return time.perf_counter()

    async def throughput(self, character: uuid.UUID) -> float:
        turns = [
            self.turn(uuid.uuid4(), character, "Tell me of the spore-songs.") for _ in range(THROUGHPUT_TURNS // 4)
        ]
        follow = [self.turn(t.conversation_id, character, f"And then {i}?") for t in turns for i in range(3)]
        started = time.perf_counter()
        for event in turns + follow:
            await publish_event(self.broker, event)
        await self.wait_done(*(t.turn_id for t in turns + follow))
        took = time.perf_counter() - started
        await self.check_stored([t.turn_id for t in turns + follow])
        return len(turns + follow) / took

    async def check_stored(self, turn_ids: list[uuid.UUID]) -> None:
        """Each turn ended in exactly one stored reply, the text its stream showed: `done` alone proves neither."""
        settings = ChatSettings()
        url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
        async with await psycopg.AsyncConnection.connect(url, options=f"-csearch_path={settings.db_schema}") as db:
            rows = await (
                await db.execute(
                    "SELECT turn_id, content FROM messages WHERE role = 'assistant' AND turn_id = ANY(%s)",
                    (turn_ids,),
                )
            ).fetchall()
        stored: dict[uuid.UUID, list[str]] = {}
        for turn_id, content in rows:
            stored.setdefault(turn_id, []).append(content)
        wrong = [t for t in turn_ids if len(stored.get(t, [])) != 1]
        for turn_id in turn_ids:
            entries: list[Any] = await self.redis.xrange(f"turn:{turn_id}") or []
            kinds = [f[b"type"] for _, f in entries]
            last_restart = len(kinds) - kinds[::-1].index(b"restart") if b"restart" in kinds else 0
            shown = "".join(f[b"text"].decode() for _, f in entries[last_restart:] if f[b"type"] == b"delta")
            if turn_id not in wrong and stored[turn_id] != [shown]:
                wrong.append(turn_id)
        if wrong:
            raise SystemExit(f"{len(wrong)} of {len(turn_ids)} turns were not stored exactly once as shown")

    async def first_delta_latency(self, character: uuid.UUID) -> tuple[list[float], list[float]]:
        """100 turns one at a time: publish -> first delta as the bench sees it; and right after each turn, the
        stub's time to first token for the very request chat sent, replayed as sent (the better of two). Pairing
        them keeps both halves of the comparison under the same load: this machine's speed drifts within
        minutes."""
        samples, stub_samples = [], []
        conversation = uuid.uuid4()
        async with httpx.AsyncClient(base_url=self.stub_url.removesuffix("/v1"), timeout=30) as stub:
            for i in range(100):
                await stub.post("/_stub/reset")  # its log then holds this turn's requests only
                turn = self.turn(conversation, character, f"Quick question number {i}.")
                waiter = asyncio.create_task(self.first_delta(turn.turn_id))
                await asyncio.sleep(0)
                sent = time.perf_counter()
                await publish_event(self.broker, turn)
                samples.append((await waiter - sent) * 1000)
                await self.wait_done(turn.turn_id)
                recorded = (await stub.get("/_stub/requests", params={"model": "orrery-chat"})).json()["requests"]
                # The last request is the one answered. Sent twice, the lower kept: after some turns chat folds
                # memory, which asks this same stub for a summary, and a replay landing beside it measures that
                # too. The lower of two only makes the baseline smaller, and chat's added time larger.
                replays = [await stub_ttft(stub, recorded[-1]) for _ in range(2)]
                stub_samples.append(min(replays))
        return samples, stub_samples

    async def kafka_baseline(self) -> list[float]:
        """publish → handler latency through the same helpers, on a topic chat does not consume."""
        broker = make_broker(KafkaSettings(), "bench-baseline")
        arrived: dict[str, float] = {}

        async def handle(event: UserRegistered) -> None:
            arrived[event.username] = time.perf_counter()

        subscribe(broker, UserRegistered, f"bench-{uuid.uuid4().hex[:8]}", handle)
        await broker.start()
        await asyncio.sleep(3)
        samples = []
        for _ in range(100):
            name = f"bench-{uuid.uuid4().hex}"
            sent = time.perf_counter()
            await publish_event(broker, UserRegistered(user_id=uuid.uuid4(), username=name, is_guest=True))
            while name not in arrived:
                await asyncio.sleep(0.0002)
            samples.append((arrived[name] - sent) * 1000)
        await broker.stop()
        return samples

    async def prompt_growth(self, character: CharacterCreated) -> tuple[list[int], list[int]]:
        conversation = uuid.uuid4()
        history = [character.greeting]
        sent_sizes, full_sizes = [], []
        httpx_client = httpx.AsyncClient(base_url=self.stub_url.removesuffix("/v1"))
        await httpx_client.post("/_stub/reset")
        for i in range(200):
            text = f"Chapter {i}: the caravan crossed another dune and found a ruin with glyphs."
            turn = self.turn(conversation, character.character_id, text)
            await publish_event(self.broker, turn)
            await self.wait_done(turn.turn_id)
            history.append(text)
            requests = (await httpx_client.get("/_stub/requests", params={"model": "orrery-chat"})).json()["requests"]
            messages = requests[-1]["body"]["messages"]
            sent_sizes.append(sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages))
            system = estimate_tokens(messages[0]["content"]) + MESSAGE_OVERHEAD
            full_sizes.append(system + sum(estimate_tokens(h) + MESSAGE_OVERHEAD for h in history))
            reply: list[Any] = await self.redis.xrange(f"turn:{turn.turn_id}") or []
            history.append("".join(f[b"text"].decode() for _, f in reply if f[b"type"] == b"delta"))
        await httpx_client.aclose()
        return sent_sizes, full_sizes


async def run(stub_url: str, chat_pid: int, chat_metrics: str) -> None:
    bench = Bench(stub_url)
    await bench.broker.start()
    try:
        character = await bench.character()
        await bench.throughput(character.character_id)  # warm-up: connections, caches, JIT-free but cold pools
        cpu_before = cpu_seconds(chat_pid)
        tps = await bench.throughput(character.character_id)
        cpu_per_turn = (cpu_seconds(chat_pid) - cpu_before) / THROUGHPUT_TURNS
        buckets_before = await first_delta_buckets(chat_metrics)
        turn_ms, stub_ms = await bench.first_delta_latency(character.character_id)
        buckets_after = await first_delta_buckets(chat_metrics)
        kafka_ms = await bench.kafka_baseline()
        sent, full = await bench.prompt_growth(character)
    finally:
        await bench.broker.stop()
        await bench.redis.aclose()

    base_p50 = statistics.median(kafka_ms) + statistics.median(stub_ms)
    base_p99 = pct(kafka_ms, 0.99) + pct(stub_ms, 0.99)
    print("chat turns (one chat process, stub with zero think time)")
    print(f"  throughput: {tps:,.0f} turns/s  (goal >= 200)")
    # Every process here shares the machine's cores; chat's own CPU time per turn is what bounds one process
    # given a core of its own.
    print(
        f"  chat's CPU time per turn: {cpu_per_turn * 1000:.2f} ms  (one core's bound: {1 / cpu_per_turn:,.0f} turns/s)"
    )
    stub50, stub99 = statistics.median(stub_ms), pct(stub_ms, 0.99)
    took50, took99 = (bucket_quantile(buckets_before, buckets_after, q) for q in (0.5, 0.99))
    print("  added time to first delta, from consuming the turn (chat's own histogram, 0.5 ms buckets):")
    print(f"    chat: taking the turn -> first delta in Redis: p50 {took50:.2f} ms, p99 {took99:.2f} ms")
    print(f"    baseline, the stub's TTFT for the same prompts: p50 {stub50:.2f} ms, p99 {stub99:.2f} ms")
    print(f"    added by chat: p50 {took50 - stub50:.2f} ms, p99 {took99 - stub99:.2f} ms  (goal <= 3 / <= 10)")
    print("  the same from publishing the turn (Kafka's delivery included, and its round trip in the baseline):")
    print(f"    publish -> first delta: p50 {statistics.median(turn_ms):.2f} ms, p99 {pct(turn_ms, 0.99):.2f} ms")
    print(f"    baseline (kafka round trip + stub TTFT): p50 {base_p50:.2f} ms, p99 {base_p99:.2f} ms")
    added50 = statistics.median(turn_ms) - base_p50
    added99 = pct(turn_ms, 0.99) - base_p99
    print(f"    added: p50 {added50:.2f} ms, p99 {added99:.2f} ms")
    print("  prompt tokens per turn (memory vs whole history):")
    for n in (1, 10, 25, 50, 100, 150, 200):
        print(f"    turn {n:>3}: {sent[n - 1]:>6,} vs {full[n - 1]:>7,}  ratio {sent[n - 1] / full[n - 1]:.2f}")
    print(f"    total 1..200: {sum(sent):,} vs {sum(full):,}  ratio {sum(sent) / sum(full):.2f}")


def main() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)  # the baseline consumer may meet old poison messages: not news here
    stub_port, chat_port = free_port(), free_port()
    base_env = {**os.environ}
    stub = start_module(
        "orrery_llm_stub",
        {
            **base_env,
            "ORRERY_STUB_PORT": str(stub_port),
            "ORRERY_STUB_TTFT_MS": "0",
            "ORRERY_STUB_TOKENS_PER_SECOND": "0",
            "ORRERY_STUB_MAX_RECORDED_REQUESTS": "100000",
            "ORRERY_STUB_LOG_LEVEL": "warning",
        },
        f"http://127.0.0.1:{stub_port}/_stub/health",
        "bench-stub.log",
    )
    stub_url = f"http://127.0.0.1:{stub_port}/v1"
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        # A throwaway group starting at the end of the topics: only this run's turns count.
        asyncio.run(
            seed_groups_at_end(
                KafkaSettings().bootstrap_servers,
                {
                    f"{prefix}.turns": [ChatTurnRequested.TOPIC],
                    f"{prefix}.characters": [CharacterCreated.TOPIC],
                    f"{prefix}.merges": ["auth.user-merged.v1"],
                },
            )
        )
    except BaseException:
        stop(stub)  # it would outlive the benchmark otherwise
        raise
    chat_env = {
        **base_env,
        "ORRERY_CHAT_PORT": str(chat_port),
        "ORRERY_CHAT_CONSUMER_GROUP_PREFIX": prefix,
        "ORRERY_CHAT_LOG_LEVEL": "WARNING",
        "ORRERY_LLM_PROVIDERS__STUB__BASE_URL": stub_url,
        "ORRERY_LLM_DEFAULT_PROVIDER": "stub",
        "ORRERY_LLM_ROUTES__CHAT": '["stub/orrery-chat"]',
        "ORRERY_LLM_ROUTES__SUMMARY": '["stub/orrery-summary"]',
    }
    chat = start_module("orrery_chat", chat_env, f"http://127.0.0.1:{chat_port}/readyz", "bench-chat.log")
    try:
        asyncio.run(asyncio.wait_for(run(stub_url, chat.pid, f"http://127.0.0.1:{chat_port}/metrics"), 300))
    finally:
        for proc in (chat, stub):
            stop(proc)


if __name__ == "__main__":
    main()
