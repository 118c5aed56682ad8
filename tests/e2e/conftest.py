"""The platform under end-to-end test: every service as `make run` starts it, on a broker of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support.llm_stub import StubControl
from tests.support.platform import PLATFORM_ENV, running

STUB = "http://127.0.0.1:18080/v1"


@pytest.fixture(scope="module")
def platform(platform_kafka: str) -> Iterator[str]:
    with running([sys.executable, "scripts/run_platform.py"], platform_kafka, PLATFORM_ENV):
        yield platform_kafka


@pytest.fixture
def stub(platform: str) -> Iterator[StubControl]:
    control = StubControl(STUB)
    control.reset()
    yield control
    control.reset()
    control.close()
