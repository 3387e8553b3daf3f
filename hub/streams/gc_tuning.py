"""The worker's garbage collector: fewer, cheaper collections.

A worker allocates a few dozen short-lived objects per record (decoded dicts, datetimes, states),
almost all freed by reference counting. With Python's default gen0 threshold (700) that still starts
a collection every few hundred records, and each older-generation collection walks every object the
worker holds: the app, SQLAlchemy's tables and compiled statements, the codec's schemas. So,
once the app is built:

- `gc.freeze()` moves every object alive then to the permanent generation, which no collection
  walks again (they live as long as the worker);
- gen0's threshold goes from 700 to `threshold` (HUB_GC_THRESHOLD, default 10,000): cyclic garbage
  is still collected, in fewer passes. Older generations keep their thresholds.

`bench/pipeline.py` measures the effect (CPU per event and the latency tail, which the full
collections made). `threshold` 0 leaves the collector as Python sets it.
"""

from __future__ import annotations

import gc

_frozen = False


def tune_gc(threshold: int) -> bool:
    """Freeze what is alive now (once per process) and set gen0's threshold; False (nothing done)
    for `threshold` 0."""
    global _frozen
    if threshold <= 0:
        return False
    if not _frozen:
        gc.collect()  # what is garbage now is collected, not frozen
        gc.freeze()
        _frozen = True
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
    return True
