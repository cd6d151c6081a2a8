"""Prometheus metrics of the worker, served at /metrics on its HTTP port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_CONSUMED = Counter(
    "milestream_events_consumed",
    "Input records consumed, by topic and outcome: applied (produced records), no_output (applied, produced "
    "nothing), nothing_due (a close tick), nothing_to_delete (a tombstone), duplicate, or a dead-letter reason.",
    ["topic", "outcome"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "milestream_processing_seconds",
    "Time to process one input record (decode, engine, state write).",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
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
