"""`make run` brings every service to ready and stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.infra import ROOT, Infra

pytestmark = pytest.mark.e2e

PORTS = {"gateway": 8000, "auth": 8001, "character-gen": 8002, "chat": 8003, "dossier": 8004}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def platform(command: list[str]) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    busy = [name for name, port in PORTS.items() if _port_open(port)]
    if busy:
        pytest.fail(f"ports already in use by something else: {busy}; stop the running platform first")
    # The suite's own broker is already up (see tests/support/infra.py): `make run` must not start another.
    env = {**os.environ, "ORRERY_EXTERNAL_KAFKA": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("Orrery is up" in line for line in lines):
            assert proc.poll() is None, "".join(lines[-40:])
            assert time.monotonic() < deadline, "platform not up in time:\n" + "".join(lines[-40:])
            time.sleep(0.3)
        yield proc, lines
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(5)


def _assert_all_ready() -> None:
    for name, port in PORTS.items():
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["status"] == "ok"


def test_make_run_serves_every_service_and_stops_on_ctrl_c(infra: Infra) -> None:
    with platform(["make", "run"]) as (proc, lines):
        _assert_all_ready()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        # make itself reports the interrupt by dying of SIGINT, as it does for any interrupted recipe.
        assert proc.wait(60) in (0, -signal.SIGINT), "".join(lines[-30:])
    assert "stopped." in [line.strip() for line in lines], "".join(lines[-30:])
    assert not [name for name, port in PORTS.items() if _port_open(port)]


def test_the_process_manager_stops_every_service_on_sigterm(infra: Infra) -> None:
    with platform([sys.executable, "scripts/run_platform.py"]) as (proc, lines):
        _assert_all_ready()
        proc.send_signal(signal.SIGTERM)  # what an init system or container runtime sends
        assert proc.wait(60) == 0, "".join(lines[-30:])
    assert not [name for name, port in PORTS.items() if _port_open(port)]
