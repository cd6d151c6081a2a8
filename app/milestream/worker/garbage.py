"""The worker process's garbage collection, measured.

CPython's full collection (generation 2) walks every container object the process holds, on the
event loop that also processes records and answers the API: on a loaded 2-core host a worker's
took 40–90 ms, a few times a minute (BENCHMARKS.md, HTTP API), and everything waiting on the loop
waited for it. Every collection's pause is observed in ``milestream_gc_pause_seconds{generation}``,
so a tail of API latency or processing can be set against it.

Most of what a full collection walks is there from the start and never becomes garbage: modules,
classes, Faust's and pydantic's machinery (about 90,000 objects, some 40 ms a walk on its own). Once
the worker has started and loaded its definitions, ``freeze_startup_objects`` moves them into the
permanent generation: a full collection then walks only what was made since, and took 1–8 ms in the
API benchmark where it took 30–55 ms (BENCHMARKS.md, HTTP API).

The collector calls back in whatever thread allocated, possibly one holding a metric's lock: the
callback only adds to plain numbers, and the histogram is built from them when /metrics is read.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .. import metrics

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
GENERATIONS = 3


class GcPauses(Collector):
    """Pause counts per bucket (the last: above every bound) and their sum, per generation."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.counts = [[0] * (len(BUCKETS) + 1) for _ in range(GENERATIONS)]
        self.sums = [0.0] * GENERATIONS
        self._started = 0.0
        # Counted when frozen, not per scrape: counting walks the whole permanent generation
        # (hundreds of thousands of objects, milliseconds a read of /metrics).
        self.frozen = 0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        pause, generation = self.clock() - self._started, info["generation"]
        self.counts[generation][bisect_left(BUCKETS, pause)] += 1
        self.sums[generation] += pause

    def collect(self) -> Iterator[GaugeMetricFamily | HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "milestream_gc_pause_seconds",
            "Pauses of Python's garbage collector, by generation (2: a full collection); the event loop, and "
            "so processing and the API, wait for each.",
            labels=["generation"],
        )
        for generation in range(GENERATIONS):
            family.add_metric(
                [str(generation)], metrics.cumulative_buckets(BUCKETS, self.counts[generation]), self.sums[generation]
            )
        yield family
        yield GaugeMetricFamily(
            "milestream_gc_frozen_objects",
            "Objects left out of every collection since the worker started (freeze_startup_objects); 0 before.",
            value=self.frozen,
        )


PAUSES = GcPauses()


def freeze_startup_objects() -> None:
    """Leave every object alive now out of later collections (``gc.freeze``), after collecting what
    start-up left: what is frozen is never collected, so only what is meant to live as long as the
    process should be there."""
    gc.collect()
    gc.freeze()
    PAUSES.frozen = gc.get_freeze_count()


def unfreeze() -> None:
    """Return the frozen objects to the collected generations (``gc.unfreeze``)."""
    gc.unfreeze()
    PAUSES.frozen = 0


def measure_pauses() -> None:
    """Observe every collection's pause from now on (once per process, however often called)."""
    if PAUSES.callback not in gc.callbacks:
        gc.callbacks.append(PAUSES.callback)
        metrics.REGISTRY.register(PAUSES)
