"""The platform under end-to-end test: every service as `make run` starts it, on a broker of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support.llm_stub import StubControl
from tests.support.platform import running

STUB = "http://127.0.0.1:18080/v1"


@pytest.fixture(scope="module")
def platform(platform_kafka: str) -> Iterator[str]:
    env = {
        "ORRERY_STUB_TTFT_MS": "20",
        "ORRERY_STUB_TOKENS_PER_SECOND": "400",
        # A model name of its own for chat replies, so a test scripts those and nothing else.
        "ORRERY_LLM_ROUTES__CHAT": '["stub/orrery-chat"]',
        "ORRERY_LLM_ROUTES__SUMMARY": '["stub/orrery-summary"]',
        "ORRERY_LLM_ROUTES__PERSONA": '["stub/orrery-persona"]',
        "ORRERY_LLM_ROUTES__EXTRACTION": '["stub/orrery-extraction"]',
        # Every test signs in a few guests from the same address.
        "ORRERY_AUTH_GUESTS_PER_IP": "1000",
    }
    with running([sys.executable, "scripts/run_platform.py"], platform_kafka, env):
        yield platform_kafka


@pytest.fixture
def stub(platform: str) -> Iterator[StubControl]:
    control = StubControl(STUB)
    control.reset()
    yield control
    control.reset()
    control.close()
