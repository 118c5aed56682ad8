"""A service process exempts its startup heap from garbage collection once the app is built, and collects its
young generation less often."""

from __future__ import annotations

import gc

from orrery_shared.service import YOUNG_GENERATION_THRESHOLD, freeze_startup_heap


def test_what_exists_at_startup_is_no_longer_walked_by_collections() -> None:
    built = [object() for _ in range(1000)]  # stands for the modules, app and clients built at startup
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen >= len(built)
        assert not any(o is built for o in gc.get_objects(generation=2))  # moved out of the oldest generation
        # The young generation is collected after 10,000 allocations, not Python's 700; the older ones as before.
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *threshold[1:])
        assert threshold[0] < YOUNG_GENERATION_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
