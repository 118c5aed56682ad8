"""The platform under end-to-end test: every service as `make run` starts it, on a broker of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support.platform import PLATFORM_ENV, running


@pytest.fixture(scope="module")
def platform(platform_kafka: str) -> Iterator[str]:
    with running([sys.executable, "scripts/run_platform.py"], platform_kafka, PLATFORM_ENV):
        yield platform_kafka
