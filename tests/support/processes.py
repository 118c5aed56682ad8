"""Starting a service as its own process and waiting until it answers, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from tests.support.infra import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_module(
    module: str, env: dict[str, str], ready_url: str, log: str, timeout: float = 90
) -> subprocess.Popen[bytes]:
    """`python -m module`, its output in `.orrery/<log>`; returns once `ready_url` answers 200."""
    out = open(ROOT / ".orrery" / log, "wb")  # noqa: SIM115 - the process writes it for its whole life
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out, stderr=out, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{module} exited with {proc.returncode}; see .orrery/{log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return proc
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{module} not ready within {timeout}s; see .orrery/{log}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis of this test's own, without persistence, like the platform's: restarting it loses everything."""
    server = shutil.which("redis-server")
    assert server, "redis-server is installed by the infrastructure scripts"
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def replicas(module: str, env: dict[str, str], port_variable: str, count: int) -> Iterator[list[int]]:
    """`count` processes of one service (`python -m module`), each on a port of its own (`port_variable`), the
    rest of their environment shared: replicas of one consumer group. Yields their ports; stops them all."""
    ports = [free_port() for _ in range(count)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            url = f"http://127.0.0.1:{port}/readyz"
            procs.append(start_module(module, {**env, port_variable: str(port)}, url, f"{module}-replica-{port}.log"))
        yield ports
    finally:
        for proc in procs:
            stop(proc)
