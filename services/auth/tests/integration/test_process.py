"""`python -m orrery_auth` as deployed: ready against the real infrastructure, keys kept across restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import Schema, free_port

pytestmark = pytest.mark.integration


@contextmanager
def auth_process(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    # Output to a file: a pipe nobody reads could fill up and stall the service.
    with log.open("ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "orrery_auth"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"auth did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_service_process_is_ready_keeps_its_dev_key_and_ignores_forwarded_for_by_default(
    infra: Infra, auth_schema: Schema, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **infra.service_env(),
        "ORRERY_ENV": "dev",
        "ORRERY_AUTH_PORT": str(port),
        "ORRERY_AUTH_DATABASE_URL": auth_schema.url,
        "ORRERY_AUTH_DB_SCHEMA": auth_schema.name,
        "ORRERY_AUTH_DEV_KEY_DIR": str(tmp_path / "keys"),
        "ORRERY_AUTH_SMTP_PORT": str(smtp_server.port),
        "ORRERY_AUTH_REDIS_KEY_PREFIX": f"test:auth:{port}:",
        "ORRERY_AUTH_GUESTS_PER_IP": "1",
    }
    with auth_process(env, port, tmp_path / "auth.log") as base:
        kid = httpx.get(f"{base}/.well-known/jwks.json").json()["keys"][0]["kid"]
        first = httpx.post(f"{base}/auth/guest", headers={"X-Forwarded-For": "198.51.100.1"})
        second = httpx.post(f"{base}/auth/guest", headers={"X-Forwarded-For": "198.51.100.2"})
        assert (first.status_code, second.status_code) == (201, 429)
        token = first.json()["access_token"]
    with auth_process(env, port, tmp_path / "auth.log") as base:
        assert httpx.get(f"{base}/.well-known/jwks.json").json()["keys"][0]["kid"] == kid
        assert httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
