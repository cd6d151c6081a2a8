"""The worker process's garbage collection, measured.

CPython's full collection (generation 2) walks every container object the process holds, on the
event loop that also processes records and answers the API: on a loaded 2-core host a worker's
took 40–90 ms, a few times a minute (BENCHMARKS.md, HTTP API), and everything waiting on the loop
waited for it. Every collection's pause is observed in ``milestream_gc_pause_seconds{generation}``,
so a tail of API latency or processing can be set against it.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from .. import metrics

_PAUSES = {generation: metrics.GC_PAUSE_SECONDS.labels(str(generation)) for generation in range(3)}
_started = [0.0]


def _observe(phase: str, info: dict[str, Any]) -> None:
    # Called by the collector, which never runs inside its own callback: no metric lock is re-entered.
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _PAUSES[info["generation"]].observe(time.perf_counter() - _started[0])


def measure_pauses() -> None:
    """Observe every collection's pause from now on (once per process, however often called)."""
    if _observe not in gc.callbacks:
        gc.callbacks.append(_observe)
