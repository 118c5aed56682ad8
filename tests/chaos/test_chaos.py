"""A short chaos run in the suite (`make chaos` runs the long one): every invariant holds under a few dozen faults.

PostgreSQL is not restarted here: the rest of the suite shares it. `make chaos` restarts it too.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from tests.chaos.run import KINDS, chaos
from tests.support.infra import Infra

pytestmark = pytest.mark.e2e

FAULTS = int(os.environ.get("ORRERY_CHAOS_TEST_FAULTS", "20"))


def test_a_short_chaos_run_loses_duplicates_and_strands_nothing(infra: Infra) -> None:
    kinds = {kind: weight for kind, weight in KINDS.items() if kind != "restart postgres"}
    seed = random.randrange(2**32)
    verdict = asyncio.run(chaos(FAULTS, users=6, seed=seed, gap_s=(0.2, 0.8), kinds=kinds))
    assert not verdict.violations, f"seed {seed}: {verdict.violations}"
    accepted = dict(verdict.rows)["turns accepted"]
    assert isinstance(accepted, int) and accepted >= FAULTS  # users chatted throughout
