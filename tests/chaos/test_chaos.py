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


# The run's own bounds (start, faults, then at most 90 s for users to see their replies end and 90 s for the
# platform to settle) decide when it ends, not the suite's per-test timeout: a reply a user cannot follow to its
# end is the verdict's to judge.
@pytest.mark.timeout(540)
def test_a_short_chaos_run_loses_duplicates_and_strands_nothing(infra: Infra) -> None:
    kinds = {kind: weight for kind, weight in KINDS.items() if kind != "restart postgres"}
    seed = random.randrange(2**32)
    run = chaos(FAULTS, users=6, seed=seed, gap_s=(0.2, 0.8), kinds=kinds, finish_s=90, settle_s=90)
    verdict = asyncio.run(run)
    assert not verdict.violations, f"seed {seed}: {verdict.violations}"
    accepted = dict(verdict.rows)["turns accepted"]
    assert isinstance(accepted, int) and accepted >= FAULTS  # users chatted throughout
