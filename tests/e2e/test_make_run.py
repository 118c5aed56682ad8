"""`make run` brings every service to ready and stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys

import httpx
import pytest

from tests.support.platform import PORTS, port_open, running

pytestmark = pytest.mark.e2e


def _assert_all_ready() -> None:
    for name, port in PORTS.items():
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["status"] == "ok"


def test_make_run_serves_every_service_and_stops_on_ctrl_c(platform_kafka: str) -> None:
    with running(["make", "run"], platform_kafka) as (proc, lines):
        _assert_all_ready()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        # make itself reports the interrupt by dying of SIGINT, as it does for any interrupted recipe.
        assert proc.wait(60) in (0, -signal.SIGINT), "".join(lines[-30:])
    assert "stopped." in [line.strip() for line in lines], "".join(lines[-30:])
    assert not [name for name, port in PORTS.items() if port_open(port)]


def test_the_process_manager_stops_every_service_on_sigterm(platform_kafka: str) -> None:
    with running([sys.executable, "scripts/run_platform.py"], platform_kafka) as (proc, lines):
        _assert_all_ready()
        proc.send_signal(signal.SIGTERM)  # what an init system or container runtime sends
        assert proc.wait(60) == 0, "".join(lines[-30:])
    assert not [name for name, port in PORTS.items() if port_open(port)]
