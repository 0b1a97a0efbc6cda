"""hwbkptd.daemon.main: the collector is tuned for the hit path (the rest runs in
tests/integration)."""

from __future__ import annotations

import gc

from hwbkptd.daemon.main import GC_THRESHOLD0, tune_gc


def test_tune_gc_raises_the_young_threshold_and_freezes_start_up_objects() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_THRESHOLD0, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
