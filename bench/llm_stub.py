"""The LLM stub's ceiling: tokens/s to one client, and concurrent 20 tok/s streams on one core.

Run:  .venv/bin/python -m bench.llm_stub  [--quick]

Starts the stub on a free 127.0.0.1 port, pinned to one CPU (the client runs on the others), then:

1. one stream, unpaced: delivered tokens/s;
2. one stream paced at 5,000 tok/s: delivered rate as a ratio of the target;
3. a ladder of N concurrent streams at 20 tok/s each: per-stream delivered rate / target, inter-token
   gaps, and the CPU use of the stub and of this client; N is "sustained" when every stream completes,
   the 5th-percentile stream keeps >= 95% of the target rate and the 99th-percentile gap stays under
   twice the target gap (100 ms). Streams start evenly over min(2 s, N/1000 s).

"agg tok/s" is all tokens received over the level's whole wall time (ramp and tail included). When
the bench's own CPU nears 100%, the client rather than the stub limits the result.

The client is a minimal asyncio protocol that only counts SSE token events, so that it is not the
bottleneck. Bounded to about 100 seconds in total.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import cast

HOST = "127.0.0.1"
TOKEN_MARKER = b'{"content":'
DONE_MARKER = b"[DONE]"
TIME_BUDGET_S = 100.0
TARGET_STREAM_RATE = 20.0


@dataclass
class StreamProbe(asyncio.Protocol):
    """Sends one request and timestamps every token event of the SSE reply."""

    request: bytes
    done: asyncio.Future[None]
    times: list[float] = field(default_factory=list)
    complete: bool = False
    _tail: bytes = b""
    _transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._tail + data
        count = buffer.count(TOKEN_MARKER)
        if count:
            self.times.extend([now] * count)
        if DONE_MARKER in buffer:
            self.complete = True
            if self._transport is not None:
                self._transport.close()
        # One byte shorter than the token marker: a marker cut by a read boundary is counted once.
        self._tail = buffer[-(len(TOKEN_MARKER) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def chat_request(port: int, tokens: int, rate: float, ttft_ms: float = 0.0) -> bytes:
    """A raw HTTP/1.1 streamed chat request with pacing overrides."""
    body = json.dumps(
        {
            "model": "bench",
            "stream": True,
            "messages": [
                {"role": "system", "content": "You are Mira, a curious lighthouse keeper."},
                {"role": "user", "content": "Tell me about the storms this winter?"},
            ],
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
        f"X-Stub-Reply-Tokens: {tokens}\r\nX-Stub-Tokens-Per-Second: {rate}\r\nX-Stub-TTFT-Ms: {ttft_ms}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def run_stream(port: int, request: bytes, delay_s: float = 0.0) -> StreamProbe:
    """Open one stream (after `delay_s`) and wait for it to finish."""
    if delay_s:
        await asyncio.sleep(delay_s)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    probe = StreamProbe(request, done)
    await loop.create_connection(lambda: probe, HOST, port)
    await done
    return probe


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def single_stream(port: int, tokens: int, rate: float) -> tuple[float, int]:
    """Delivered tokens/s of one stream (first token to last) and tokens received."""
    probe = await run_stream(port, chat_request(port, tokens, rate))
    times = probe.times
    if len(times) < 2:
        return 0.0, len(times)
    return (len(times) - 1) / (times[-1] - times[0]), len(times)


@dataclass
class LevelResult:
    streams: int
    completed: int
    ratio_median: float
    ratio_p5: float
    gap_p50_ms: float
    gap_p99_ms: float
    gap_max_ms: float
    stub_cpu: float
    client_cpu: float
    aggregate_tok_s: float

    @property
    def sustained(self) -> bool:
        target_gap_ms = 1000 / TARGET_STREAM_RATE
        return self.completed == self.streams and self.ratio_p5 >= 0.95 and self.gap_p99_ms <= 2 * target_gap_ms


async def concurrent_level(port: int, pid: int, streams: int, tokens: int) -> LevelResult:
    """N streams at 20 tok/s, started evenly over a ramp so they are not in lock-step."""
    ramp_s = min(2.0, streams / 1000)
    request = chat_request(port, tokens, TARGET_STREAM_RATE)
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    client_before = cpu_seconds(os.getpid())
    probes = await asyncio.gather(
        *(run_stream(port, request, ramp_s * i / streams) for i in range(streams)), return_exceptions=True
    )
    cpu_used = cpu_seconds(pid) - cpu_before
    client_used = cpu_seconds(os.getpid()) - client_before
    wall = time.perf_counter() - wall_before
    ratios: list[float] = []
    gaps: list[float] = []
    completed = 0
    total_tokens = 0
    for probe in probes:
        if isinstance(probe, BaseException) or len(probe.times) < 2:
            continue
        completed += probe.complete and len(probe.times) == tokens
        total_tokens += len(probe.times)
        times = probe.times
        ratios.append((len(times) - 1) / (times[-1] - times[0]) / TARGET_STREAM_RATE)
        gaps.extend(b - a for a, b in pairwise(times))
    return LevelResult(
        streams=streams,
        completed=completed,
        ratio_median=statistics.median(ratios) if ratios else 0.0,
        ratio_p5=percentile(ratios, 5) if ratios else 0.0,
        gap_p50_ms=percentile(gaps, 50) * 1000,
        gap_p99_ms=percentile(gaps, 99) * 1000,
        gap_max_ms=max(gaps) * 1000 if gaps else float("nan"),
        stub_cpu=cpu_used / wall,
        client_cpu=client_used / wall,
        aggregate_tok_s=total_tokens / wall,
    )


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_stub(port: int) -> subprocess.Popen[bytes]:
    """The stub as a subprocess, pinned to CPU 0 when there is more than one."""
    env = {
        **os.environ,
        "ORRERY_STUB_HOST": HOST,
        "ORRERY_STUB_PORT": str(port),
        "ORRERY_STUB_TTFT_MS": "0",
        "ORRERY_STUB_RECORD_REQUESTS": "false",
        "ORRERY_STUB_LOG_LEVEL": "error",
    }
    proc = subprocess.Popen([sys.executable, "-m", "orrery_llm_stub"], env=env)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(proc.pid, {cpus[0]})
        os.sched_setaffinity(0, set(cpus[1:]))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the stub exited with {proc.returncode}") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the stub did not start listening within 15 s")


async def main_async(port: int, pid: int, quick: bool) -> None:
    started = time.monotonic()
    cpus = len(os.sched_getaffinity(pid))
    print(f"stub pid {pid} on 127.0.0.1:{port}, pinned to {cpus} CPU(s); client on the others")

    await single_stream(port, 2_000, 0)  # warm-up
    unpaced, received = await single_stream(port, 200_000, 0)
    print(f"\n1) one stream, unpaced: {unpaced:,.0f} tok/s delivered ({received:,} tokens)")
    paced, received = await single_stream(port, 10_000, 5_000)
    print(f"2) one stream at 5,000 tok/s: {paced:,.0f} tok/s delivered, ratio {paced / 5000:.3f}")

    levels = [250, 500, 1000] if quick else [500, 1000, 1500, 2000, 3000, 4000]
    tokens = 60 if quick else 100
    print(f"\n3) concurrent streams at {TARGET_STREAM_RATE:.0f} tok/s each, {tokens} tokens per stream")
    print(
        f"{'streams':>8} {'done':>6} {'ratio p50':>10} {'ratio p5':>9} {'gap p50':>8} {'gap p99':>8} "
        f"{'gap max':>8} {'stub CPU':>9} {'bench CPU':>10} {'agg tok/s':>10}  verdict"
    )
    best = 0
    for streams in levels:
        level_time = tokens / TARGET_STREAM_RATE + min(2.0, streams / 1000) + 3
        if time.monotonic() - started + level_time > TIME_BUDGET_S:
            print(f"{streams:>8}  skipped (time budget)")
            break
        result = await concurrent_level(port, pid, streams, tokens)
        verdict = "sustained" if result.sustained else "NOT sustained"
        print(
            f"{result.streams:>8} {result.completed:>6} {result.ratio_median:>10.3f} {result.ratio_p5:>9.3f} "
            f"{result.gap_p50_ms:>6.1f}ms {result.gap_p99_ms:>6.1f}ms {result.gap_max_ms:>6.1f}ms "
            f"{result.stub_cpu:>8.0%} {result.client_cpu:>10.0%} {result.aggregate_tok_s:>10,.0f}  {verdict}"
        )
        if not result.sustained:
            break
        best = streams
        await asyncio.sleep(0.5)
    print(f"\nceiling: {unpaced:,.0f} tok/s to one client; {best:,} concurrent streams at 20 tok/s on one core")
    print(f"(bench took {time.monotonic() - started:.0f} s)")


def main(argv: Sequence[str] | None = None) -> None:
    """Start the stub, measure, stop it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller ladder (about 20 s)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    port = free_port()
    proc = start_stub(port)
    try:
        asyncio.run(main_async(port, proc.pid, args.quick))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
