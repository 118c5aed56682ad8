"""The whole platform as `make run` starts it, for end-to-end tests through its public HTTP and WebSocket API."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from orrery_shared.kafka import ensure_topics
from orrery_shared.settings import KafkaSettings
from tests.support.infra import ROOT, Infra
from tests.support.kafka_control import DisposableKafka
from tests.support.llm_stub import StubControl
from tests.support.processes import free_port, start_module, stop

E2E_KAFKA_PORT, E2E_KAFKA_CONTROLLER_PORT = 39092, 39093

# How end-to-end tests run the platform: the stub paced like a quick provider, a model per task (so a test
# scripts exactly the replies it is about), and room for the many guests tests sign in from one address.
PLATFORM_ENV = {
    "ORRERY_STUB_TTFT_MS": "20",
    "ORRERY_STUB_TOKENS_PER_SECOND": "400",
    "ORRERY_LLM_ROUTES__CHAT": '["stub/orrery-chat"]',
    "ORRERY_LLM_ROUTES__SUMMARY": '["stub/orrery-summary"]',
    "ORRERY_LLM_ROUTES__PERSONA": '["stub/orrery-persona"]',
    "ORRERY_LLM_ROUTES__EXTRACTION": '["stub/orrery-extraction"]',
    "ORRERY_AUTH_GUESTS_PER_IP": "1000",
}

PORTS = {"gateway": 8000, "auth": 8001, "character-gen": 8002, "chat": 8003, "dossier": 8004}
GATEWAY = "http://127.0.0.1:8000"
STUB = "http://127.0.0.1:18080/v1"  # the LLM stub `make run` starts


def platform_env(kafka: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of platform processes: this one's, less test-only keys, on the given broker."""
    base = {k: v for k, v in os.environ.items() if k != "ORRERY_JWT_JWKS"}  # trust the platform's own auth
    return {**base, "ORRERY_EXTERNAL_KAFKA": "1", "ORRERY_KAFKA_BOOTSTRAP_SERVERS": kafka, **(extra or {})}


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


SCHEMA_OWNERS = ("orrery_auth", "orrery_character_gen", "orrery_chat", "orrery_dossier")


@pytest.fixture(scope="session")
def platform_schemas(infra: Infra) -> None:
    """Every service's schema at its newest migration, as `make run` leaves it before starting the platform: on
    a fresh machine nothing else has created the tables the platform's services use."""
    for module in SCHEMA_OWNERS:
        done = subprocess.run(
            [sys.executable, "-m", module, "migrate"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{module} migrate failed:\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="session")
def platform_kafka(infra: Infra, platform_schemas: None) -> Iterator[str]:
    """An empty broker for the platform under test, so its services' consumer groups (named as in production,
    reading from the start) see only what these tests publish. Only one platform runs at a time (fixed ports).
    The platform's database schemas are migrated first."""
    kafka = DisposableKafka("kafka-e2e", E2E_KAFKA_PORT, E2E_KAFKA_CONTROLLER_PORT)
    kafka.stop()
    kafka.wipe()
    kafka.start()
    asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=kafka.bootstrap)))
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()
        kafka.wipe()


@pytest.fixture
def stub(platform: str) -> Iterator[StubControl]:
    """The running platform's LLM stub, emptied of scripts and recorded requests around the test (`platform` is
    the fixture of the test's folder or module)."""
    control = StubControl(STUB)
    control.reset()
    yield control
    control.reset()
    control.close()


@contextmanager
def running(
    command: list[str], kafka: str, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Start the platform with `command`; yields once it printed that it is up (fails the test otherwise)."""
    busy = [name for name, port in PORTS.items() if port_open(port)]
    if busy:
        raise AssertionError(f"ports already in use by something else: {busy}; stop the running platform first")
    # The broker is the test's (platform_kafka): `make run` must not start one of its own.
    env = platform_env(kafka, extra_env)
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
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        reader.join(5)


@contextmanager
def extra_gateway(kafka: str, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """A second gateway process beside the platform's (sharing only Kafka and Redis with it)."""
    port = free_port()
    env = platform_env(kafka, {"ORRERY_GATEWAY_PORT": str(port), **(extra_env or {})})
    url = f"http://127.0.0.1:{port}"
    proc = start_module("orrery_gateway", env, f"{url}/readyz", f"gateway-{port}.log")
    try:
        yield url
    finally:
        stop(proc)
