"""The LLM stub server for the test suite: a real process on a free loopback port, reset for each test.

Fixtures:

* ``llm_stub_url`` (session): starts ``python -m orrery_llm_stub`` once, waits until it answers and
  yields its OpenAI base URL (``http://127.0.0.1:<port>/v1``).
* ``llm_stub`` (function): a :class:`StubControl` for scripting the stub and reading what it received;
  the script queue and request log are cleared before and after each test.
* ``llm_stub_env`` (function): points ORRERY_LLM_* at the stub for code that loads settings from the
  environment (every task routed to the stub).

The stub runs with no think time (TTFT 0, unpaced tokens) so tests are fast; scripts and per-request
headers slow it down where a test needs that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from orrery_shared.llm.settings import LLMSettings, ProviderProfile

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class StubControl:
    """Scripts the stub and reads its request log (synchronous calls to the stub's /_stub API)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.root_url = base_url.removesuffix("/v1")
        self._http = httpx.Client(base_url=self.root_url, timeout=10.0)

    def script(self, *steps: Mapping[str, Any], **step: Any) -> None:
        """Queue steps (dicts) or one step given as keywords, e.g. ``script(status=429, times=2)``."""
        queued = [dict(s) for s in steps] + ([step] if step else [])
        response = self._http.post("/_stub/script", json={"steps": queued})
        response.raise_for_status()

    def pending(self) -> list[dict[str, Any]]:
        """Steps still queued."""
        steps: list[dict[str, Any]] = self._http.get("/_stub/script").json()["steps"]
        return steps

    def requests(self, *, model: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """Requests received since the last reset (headers lower-cased, full JSON bodies), oldest first."""
        params = {k: v for k, v in (("model", model), ("path", path)) if v is not None}
        entries: list[dict[str, Any]] = self._http.get("/_stub/requests", params=params).json()["requests"]
        return entries

    def chat_requests(self, *, model: str | None = None) -> list[dict[str, Any]]:
        """Chat-completion requests received since the last reset."""
        return self.requests(model=model, path="/v1/chat/completions")

    def reset(self) -> None:
        """Drop queued steps and recorded requests."""
        self._http.post("/_stub/reset").raise_for_status()

    def settings(self, **overrides: Any) -> LLMSettings:
        """LLMSettings with the stub profile pointing here and every task routed to it (override freely)."""
        providers = overrides.pop("providers", {})
        return LLMSettings(
            providers={"stub": ProviderProfile(base_url=self.base_url), **providers},
            default_provider=overrides.pop("default_provider", "stub"),
            **overrides,
        )

    def close(self) -> None:
        """Close the control connection."""
        self._http.close()


@pytest.fixture(scope="session")
def llm_stub_url() -> Iterator[str]:
    """Start the stub process on a free loopback port; yields its OpenAI base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "ORRERY_STUB_HOST": HOST,
        "ORRERY_STUB_PORT": str(port),
        "ORRERY_STUB_TTFT_MS": "0",
        "ORRERY_STUB_TOKENS_PER_SECOND": "0",
        "ORRERY_STUB_MAX_RECORDED_REQUESTS": "10000",
        "ORRERY_STUB_LOG_LEVEL": "warning",
    }
    log = tempfile.NamedTemporaryFile(prefix="orrery-llm-stub-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "orrery_llm_stub"], env=env, stdout=log, stderr=subprocess.STDOUT)
    root = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the LLM stub exited with {process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{root}/_stub/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the LLM stub did not answer within {STARTUP_TIMEOUT_S}s; see {log.name}")
            time.sleep(0.05)
        yield f"{root}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def llm_stub(llm_stub_url: str) -> Iterator[StubControl]:
    """Control of the session's stub, with its script and request log cleared around the test."""
    control = StubControl(llm_stub_url)
    control.reset()
    try:
        yield control
    finally:
        control.reset()
        control.close()


@pytest.fixture
def llm_stub_env(llm_stub_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Environment for settings loaded from ORRERY_LLM_*: every task on the stub. Returns the base URL."""
    for name in list(os.environ):
        if name.startswith("ORRERY_LLM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ORRERY_LLM_PROVIDERS__STUB__BASE_URL", llm_stub_url)
    monkeypatch.setenv("ORRERY_LLM_DEFAULT_PROVIDER", "stub")
    return llm_stub_url
