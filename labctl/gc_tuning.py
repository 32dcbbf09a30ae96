"""Garbage-collector settings for the processes on the ingest path.

Every reading allocates a few containers (its sample dict, its NamedTuple), and a batch keeps
thousands of them alive until it is spooled. With CPython's default first-generation threshold
(700 allocations) the collector runs every few dozen readings and walks the batch's live
objects each time, which cost about a third of the validation time (benchmarks/ingest.py).
Nothing on that path makes reference cycles, so collecting less often frees nothing later
than it would have been freed anyway.
"""

from __future__ import annotations

import gc

INGEST_THRESHOLDS = (20_000, 20, 100)


def tune_for_ingest() -> None:
    """Freeze what start-up allocated (modules, settings, models: they live as long as the
    process) out of the collector's full passes, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*INGEST_THRESHOLDS)
