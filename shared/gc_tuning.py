"""The garbage collector's pace for a long-running service process.

CPython's cycle collector runs its youngest generation every 700 net allocations of container
objects and, every so often, walks every object the process holds. A service allocates
thousands of short-lived dicts, lists and pydantic objects per request and holds a large
heap that never dies (modules, the GraphQL schema, pools; with `MONGO_URI=memory://`, the
whole store): measured under `placeOrder` (docs/performance.md), the collector was about a
third of the gateway's CPU and most of what separated the notification consumer from its
target. Almost all of that garbage is freed by reference counting as it goes; the collector
is only for cycles, which can wait longer.

So, once the app is built: everything alive then is frozen (`gc.freeze`: never scanned
again), and the youngest generation is collected every `GC_GEN0_THRESHOLD` allocations
(50,000 by default; 0 keeps Python's 700), the older ones after 50 and 100 passes of the one
below. Cyclic garbage then waits a little longer to be freed: at most about a generation's
worth of objects (a few MB), seen in the bench's memory figures.

Each collection's pause is recorded in `python_gc_pause_seconds{service, generation}`: a pause
stops every request in flight in the process, so an operator (or the bench) can tell a
collector's pause from a queue.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from shared.metrics import GC_PAUSE

OLDER_GENERATION_PASSES = (50, 100)


def tune_garbage_collector(gen0_threshold: int) -> None:
    """Freeze what the start-up built and pace the collector (`gen0_threshold` 0: Python's
    own thresholds, still frozen)."""
    gc.collect()
    gc.freeze()
    if gen0_threshold > 0:
        gc.set_threshold(gen0_threshold, *OLDER_GENERATION_PASSES)


def record_gc_pauses(service: str) -> None:
    """Observe the length of every collection of this process in `python_gc_pause_seconds`."""
    by_generation = [GC_PAUSE.labels(service, str(n)) for n in range(len(gc.get_threshold()))]
    started = 0.0

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            by_generation[info["generation"]].observe(time.perf_counter() - started)

    gc.callbacks.append(on_collection)
