"""A service process exempts its startup heap from garbage collection once the app is built."""

from __future__ import annotations

import gc

from orrery_shared.service import freeze_startup_heap


def test_what_exists_at_startup_is_no_longer_walked_by_collections() -> None:
    built = [object() for _ in range(1000)]  # stands for the modules, app and clients built at startup
    gc.unfreeze()
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen >= len(built)
        assert not any(o is built for o in gc.get_objects(generation=2))  # moved out of the oldest generation
    finally:
        gc.unfreeze()
