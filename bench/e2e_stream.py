"""Streaming through the whole platform against streaming from the LLM stub directly, in the same run.

Runs, on a broker of its own and the local PostgreSQL and Redis: the LLM stub, character-gen, chat and one
gateway process (tokens are signed here and trusted through a static JWKS, so auth is not needed). Measures:
1. added time to first token: 50 messages one at a time, send → first `delta` at the WebSocket client, against
   the same request streamed from the stub directly with the openai SDK (the single-process path).
2. added inter-token gap at N concurrent streams x 20 tok/s through the one gateway: p99 of the gaps between
   deltas at the clients, against N concurrent direct streams from the stub.
3. idle authenticated sockets one gateway process holds, and its resident memory per socket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
from websockets.asyncio.client import ClientConnection, connect

from orrery_shared.events import CharacterCreated, ChatTurnRequested, UserMerged
from orrery_shared.kafka import ensure_topics
from orrery_shared.settings import KafkaSettings
from tests.support.kafka_control import DisposableKafka
from tests.support.kafka_groups import seed_groups_at_end
from tests.support.processes import free_port, start_module, stop
from tests.support.tokens import TokenMinter

ROOT = Path(__file__).resolve().parents[1]
RATE = 20
CONCURRENCY = [int(n) for n in os.environ.get("BENCH_STREAMS", "100,1000").split(",")]
IDLE_SOCKETS = int(os.environ.get("BENCH_IDLE_SOCKETS", "10000"))


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Platform:
    def __init__(self) -> None:
        self.kafka = DisposableKafka("kafka-bench", 39192, 39193)
        self.minter = TokenMinter()
        self.user = uuid.uuid4()  # one user: the spun character is theirs, visible to all their sockets
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stub_port, self.gateway_port = free_port(), free_port()

    @property
    def gateway(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/ws"

    @property
    def stub_url(self) -> str:
        return f"http://127.0.0.1:{self.stub_port}/v1"

    def up(self) -> None:
        self.kafka.stop()
        self.kafka.wipe()
        self.kafka.start()
        asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=self.kafka.bootstrap)))
        chat_prefix = f"bench-{uuid.uuid4().hex[:8]}"
        asyncio.run(
            seed_groups_at_end(
                self.kafka.bootstrap,
                {
                    f"{chat_prefix}.turns": [ChatTurnRequested.TOPIC],
                    f"{chat_prefix}.characters": [CharacterCreated.TOPIC],
                    f"{chat_prefix}.merges": [UserMerged.TOPIC],
                },
            )
        )
        chat_port, characters_port = free_port(), free_port()
        env = {
            **os.environ,
            "ORRERY_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "ORRERY_JWT_JWKS": self.minter.jwks,
            "ORRERY_LLM_PROVIDERS__STUB__BASE_URL": self.stub_url,
            "ORRERY_LLM_DEFAULT_PROVIDER": "stub",
            "ORRERY_STUB_PORT": str(self.stub_port),
            "ORRERY_STUB_TTFT_MS": "0",
            "ORRERY_STUB_TOKENS_PER_SECOND": str(RATE),
            "ORRERY_STUB_REPLY_TOKENS": "60",
            "ORRERY_STUB_RECORD_REQUESTS": "false",
            "ORRERY_CHAT_PORT": str(chat_port),
            "ORRERY_CHAT_CONSUMER_GROUP_PREFIX": chat_prefix,
            "ORRERY_CHAT_TURN_CONCURRENCY": "5000",
            "ORRERY_CHARACTER_GEN_PORT": str(characters_port),
            "ORRERY_GATEWAY_PORT": str(self.gateway_port),
            "ORRERY_GATEWAY_CHAT_URL": f"http://127.0.0.1:{chat_port}",
            "ORRERY_GATEWAY_CHARACTERS_URL": f"http://127.0.0.1:{characters_port}",
            "ORRERY_GATEWAY_MESSAGES_PER_MINUTE": "1000000",
            "ORRERY_GATEWAY_SPINS_PER_HOUR": "1000000",
            "ORRERY_GATEWAY_MAX_SOCKETS_PER_USER": "1000000",  # one user holds every socket here
            "ORRERY_CHAT_LOG_LEVEL": "WARNING",
            "ORRERY_GATEWAY_LOG_LEVEL": "WARNING",
            "ORRERY_CHARACTER_GEN_LOG_LEVEL": "WARNING",
        }
        self.procs.append(start_module("orrery_llm_stub", env, f"{self.stub_url}/models", "bench-e2e-stub.log"))
        for svc in ("chat", "character_gen"):
            subprocess.run([sys.executable, "-m", f"orrery_{svc}", "migrate"], env=env, check=True, capture_output=True)
        self.procs.append(
            start_module("orrery_chat", env, f"http://127.0.0.1:{chat_port}/readyz", "bench-e2e-chat.log")
        )
        self.procs.append(
            start_module(
                "orrery_character_gen", env, f"http://127.0.0.1:{characters_port}/readyz", "bench-e2e-chars.log"
            )
        )
        self.procs.append(
            start_module("orrery_gateway", env, f"http://127.0.0.1:{self.gateway_port}/readyz", "bench-e2e-gateway.log")
        )

    def down(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        self.kafka.stop()
        self.kafka.wipe()


async def frames_until(ws: ClientConnection, *types: str) -> list[dict[str, Any]]:
    seen = []
    async with asyncio.timeout(120):
        while True:
            frame = json.loads(await ws.recv())
            seen.append(frame)
            if frame["type"] in types:
                return seen


async def character(platform: Platform, token: str) -> str:
    async with connect(platform.gateway, subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "spin"}))
        ready = (await frames_until(ws, "character.ready", "character.failed"))[-1]
    assert ready["type"] == "character.ready", ready
    character_id: str = ready["character"]["id"]
    return character_id


async def start_conversation(ws: ClientConnection, character_id: str) -> str:
    await ws.send(json.dumps({"type": "start_conversation", "character_id": character_id}))
    started = (await frames_until(ws, "conversation.started", "error"))[-1]
    if started["type"] != "conversation.started":
        raise RuntimeError(f"start_conversation refused: {started}")
    conversation_id: str = started["conversation_id"]
    return conversation_id


async def timed_turn(ws: ClientConnection, character_id: str, text: str) -> tuple[float, list[float]]:
    """Send one message on a fresh conversation; returns the time to the first delta and the gaps after it."""
    return await timed_message(ws, await start_conversation(ws, character_id), text)


async def timed_message(ws: ClientConnection, conversation_id: str, text: str) -> tuple[float, list[float]]:
    """Send one message; returns the time to its first delta and the gaps between the deltas after it."""
    sent = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "conversation_id": conversation_id, "content": text}))
    arrivals = []
    async with asyncio.timeout(180):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "delta":
                arrivals.append(time.perf_counter())
            elif frame["type"] in ("turn.done", "turn.failed", "error"):
                break
    if not arrivals:
        raise RuntimeError(f"no delta: {frame}")
    return arrivals[0] - sent, [b - a for a, b in itertools.pairwise(arrivals)]


async def direct_stream(client: openai.AsyncOpenAI, text: str) -> tuple[float, list[float]]:
    sent = time.perf_counter()
    stream = await client.chat.completions.create(
        model="orrery-stub-1",
        stream=True,
        messages=[{"role": "system", "content": "You are Vexa, a xenobotanist."}, {"role": "user", "content": text}],
    )
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
    return arrivals[0] - sent, [b - a for a, b in itertools.pairwise(arrivals)]


async def first_token(platform: Platform, character_id: str) -> tuple[list[float], list[float]]:
    token = platform.minter.token(platform.user)
    through, direct = [], []
    client = openai.AsyncOpenAI(base_url=platform.stub_url, api_key="stub", max_retries=0)
    async with connect(platform.gateway, subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
        for i in range(50):
            ttft, _ = await timed_turn(ws, character_id, f"Question {i}?")
            through.append(ttft * 1000)
            ttft, _ = await direct_stream(client, f"Question {i}?")
            direct.append(ttft * 1000)
    await client.close()
    return through, direct


async def concurrent(platform: Platform, character_id: str, streams: int) -> tuple[list[float], list[float]]:
    sockets = [
        await connect(platform.gateway, subprotocols=["bearer", platform.minter.token(platform.user)])  # type: ignore[list-item]
        for _ in range(streams)
    ]
    # Conversations are opened at a bounded pace (each one reads the character from character-gen), then every
    # message is sent at once: the streams, not the set-up, are what is measured.
    gate = asyncio.Semaphore(50)

    async def opened(ws: ClientConnection) -> str:
        async with gate:
            return await start_conversation(ws, character_id)

    conversations = await asyncio.gather(*(opened(ws) for ws in sockets))
    results = await asyncio.gather(
        *(timed_message(ws, c, "Tell me a story.") for ws, c in zip(sockets, conversations, strict=True))
    )
    for ws in sockets:
        await ws.close()
    through = [g * 1000 for _, gaps in results for g in gaps]
    client = openai.AsyncOpenAI(base_url=platform.stub_url, api_key="stub", max_retries=0)
    direct_results = await asyncio.gather(*(direct_stream(client, "Tell me a story.") for _ in range(streams)))
    await client.close()
    direct = [g * 1000 for _, gaps in direct_results for g in gaps]
    return through, direct


async def idle(platform: Platform, gateway_pid: int) -> tuple[int, float]:
    token = platform.minter.token(platform.user, ttl=3600)
    before = rss_kib(gateway_pid)
    sockets: list[ClientConnection] = []
    for _ in range(0, IDLE_SOCKETS, 500):
        batch = await asyncio.gather(
            *(
                connect(platform.gateway, subprotocols=["bearer", token], ping_interval=None)  # type: ignore[list-item]
                for _ in range(min(500, IDLE_SOCKETS - len(sockets)))
            )
        )
        sockets += batch
    await asyncio.sleep(2)
    await sockets[-1].send(json.dumps({"type": "ping"}))  # the gateway still answers with them all open
    assert json.loads(await sockets[-1].recv())["type"] == "pong"
    after = rss_kib(gateway_pid)
    held = len(sockets)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return held, (after - before) / held


async def measure(platform: Platform) -> None:
    character_id = await character(platform, platform.minter.token(platform.user))
    through, direct = await first_token(platform, character_id)
    print("end-to-end streaming (gateway + chat + Kafka + Redis + stub) vs the stub directly, same run")
    added50 = statistics.median(through) - statistics.median(direct)
    added99 = pct(through, 0.99) - pct(direct, 0.99)
    print(
        f"  time to first token: platform p50 {statistics.median(through):.1f} / p99 {pct(through, 0.99):.1f} ms,"
        f" direct p50 {statistics.median(direct):.1f} / p99 {pct(direct, 0.99):.1f} ms"
    )
    print(f"  added TTFT: p50 {added50:.1f} ms, p99 {added99:.1f} ms  (goal <= 10 / <= 25)")
    for streams in CONCURRENCY:
        through, direct = await concurrent(platform, character_id, streams)
        print(
            f"  {streams} concurrent streams x {RATE} tok/s: gap p99 platform {pct(through, 0.99):.1f} ms, "
            f"direct {pct(direct, 0.99):.1f} ms, added {pct(through, 0.99) - pct(direct, 0.99):.1f} ms"
            f" (median gap {statistics.median(through):.1f} vs {statistics.median(direct):.1f}; goal added <= 3)"
        )
    gateway = platform.procs[-1]
    held, per_socket = await idle(platform, gateway.pid)
    print(f"  idle sockets held by one gateway: {held:,}, RSS per socket {per_socket:.1f} KiB  (goal 10,000 at <= 24)")


def on_platform(measure: Callable[[Platform], Awaitable[None]]) -> None:
    """Start the platform, run `measure` on it (15 minutes at most), and stop it whatever happens."""
    platform = Platform()
    try:
        platform.up()
        asyncio.run(asyncio.wait_for(measure(platform), 900))
    finally:
        platform.down()


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    on_platform(measure)


if __name__ == "__main__":
    main()
