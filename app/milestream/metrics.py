"""Prometheus metrics of the worker, served at /metrics on its HTTP port."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


class TalliedHistogram(Collector):
    """A histogram without labels whose observations come in bulk, from the one thread that makes
    them: a bisect and two additions each. prometheus_client's ``Histogram.observe`` takes a lock and
    walks the buckets (0.65 µs), once for every input record of a worker that processes tens of
    thousands a second. /metrics reads it as it does any histogram (``_bucket``, ``_count``, ``_sum``)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last: above every bound
        self.sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float]) -> None:
        counts, buckets, total = self.counts, self.buckets, 0.0
        for value in values:
            counts[bisect_left(buckets, value)] += 1
            total += value
        self.sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative_buckets(self.buckets, self.counts), self.sum)
        yield family


def cumulative_buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """A histogram's buckets as /metrics shows them, from counts per bucket (the last: above every bound)."""
    cumulative, buckets = 0, []
    for bound, count in zip((*map(str, bounds), "+Inf"), counts, strict=True):
        cumulative += count
        buckets.append((bound, float(cumulative)))
    return buckets


EVENTS_CONSUMED = Counter(
    "milestream_events_consumed",
    "Input records consumed, by topic and outcome: applied (produced records), no_output (applied, produced "
    "nothing), nothing_due (a close tick), nothing_to_delete (a tombstone), duplicate, or a dead-letter reason.",
    ["topic", "outcome"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = TalliedHistogram(
    "milestream_processing_seconds",
    "Time to process one input record (decode, engine, state write).",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
    registry=REGISTRY,
)
HTTP_REQUEST_SECONDS = Histogram(
    "milestream_http_request_seconds",
    "Time the worker took to answer an HTTP request, by route pattern, method and status (api/timing.py).",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
OUTPUTS_EMITTED = Counter(
    "milestream_outputs_emitted",
    "Milestone events published to the promotions topic, by kind.",
    ["kind"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "milestream_dead_letters",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
LATE_EVENTS = Counter(
    "milestream_late_events",
    "Events that arrived after their cycle's buffer days had elapsed (recorded, not counted).",
    registry=REGISTRY,
)
DEFINITIONS_LOADED = Gauge(
    "milestream_definitions_loaded",
    "Milestone definitions this worker currently knows.",
    registry=REGISTRY,
)
OUTPUT_SEND_FAILURES = Counter(
    "milestream_output_send_failures",
    "Sends to a topic (output or changelog) the broker failed or did not acknowledge in time; the worker then exits "
    "to restart from its last commit, so alert on this and on worker restarts.",
    ["topic"],
    registry=REGISTRY,
)
PROCESSING_FAILURES = Counter(
    "milestream_processing_failures",
    "Attempts at processing an input record that raised: the record is not dead-lettered but retried "
    "(kind=error) or the worker restarts from its last commit (kind=infrastructure).",
    ["kind"],
    registry=REGISTRY,
)
POISON_RECORDS = Counter(
    "milestream_poison_records",
    "Records dead-lettered as processing_error after MILESTREAM_MAX_PROCESSING_ATTEMPTS failed attempts "
    "(alert on any).",
    registry=REGISTRY,
)

# The batch runtime (runtime/)
BATCH_RECORDS = Histogram(
    "milestream_batch_records",
    "Input records per checkpoint: the records of the batches the runtime committed together.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
    registry=REGISTRY,
)
CHECKPOINT_SECONDS = Histogram(
    "milestream_checkpoint_seconds",
    "Time to make a batch durable: outputs acknowledged, changelog acknowledged, RocksDB written, offsets committed.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
COMMITS = Counter(
    "milestream_commits",
    "Offset commits of the customer topics, by result (ok, or failed: the partitions moved during the batch).",
    ["result"],
    registry=REGISTRY,
)
CHANGELOG_RECORDS = Counter(
    "milestream_changelog_records",
    "State changelog records sent (one per key a batch changed).",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "milestream_consumer_lag",
    "Records on an owned input partition not yet processed (high watermark minus position).",
    ["topic", "partition"],
    registry=REGISTRY,
)
REBALANCES = Counter(
    "milestream_rebalances",
    "Partition assignments this worker received (each consumer-group rebalance).",
    registry=REGISTRY,
)
OWNED_PARTITIONS = Gauge(
    "milestream_owned_partitions",
    "Customer partitions (state stores) this worker owns.",
    registry=REGISTRY,
)
RESTORING_PARTITIONS = Gauge(
    "milestream_restoring_partitions",
    "Owned partitions whose state is still being restored from the changelog.",
    registry=REGISTRY,
)
RESTORED_RECORDS = Counter(
    "milestream_restored_records",
    "Changelog records read to restore state stores.",
    registry=REGISTRY,
)
STATE_KEYS = Gauge(
    "milestream_state_keys",
    "Estimated keys in the state store of an owned partition (RocksDB's estimate).",
    ["partition"],
    registry=REGISTRY,
)
STATE_BYTES = Gauge(
    "milestream_state_bytes",
    "Estimated live bytes in the state store of an owned partition (RocksDB's estimate).",
    ["partition"],
    registry=REGISTRY,
)

BACKFILL_RECORDS = Counter(
    "milestream_backfill_records_total",
    "Backfill records by milestone and outcome: backfilled (applied), backfill_skipped (live processing "
    "counts it, or applied before), backfill_marker (a run's start or end), or a dead-letter reason.",
    ["milestone_id", "outcome"],
    registry=REGISTRY,
)
