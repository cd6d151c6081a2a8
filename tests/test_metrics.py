"""The worker's own metrics (metrics.py)."""

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from milestream.metrics import TalliedHistogram

BUCKETS = (0.00005, 0.0001, 0.00025, 0.001, 0.5)


def test_a_tallied_histogram_reads_as_prometheus_clients_histogram():
    values = [random.Random(3).choice([0.00005, 0.0001, 0.00003, 0.0002, 0.7, 0.001]) for _ in range(200)]
    values += [random.Random(5).uniform(0, 0.002) for _ in range(300)]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tallied = TalliedHistogram("x_seconds", "doc", BUCKETS, ours)
    reference = Histogram("x_seconds", "doc", buckets=BUCKETS, registry=theirs)
    tallied.observe_many(values[:250])
    for value in values[250:]:
        tallied.observe(value)
    for value in values:
        reference.observe(value)

    def samples(registry):  # the reference also exports a creation time, which a tally has no use for
        return [
            line
            for line in generate_latest(registry).decode().splitlines()
            if line.startswith("x_seconds_") and not line.startswith("x_seconds_created") and "_sum" not in line
        ]

    assert samples(ours) == samples(theirs)
    assert abs(ours.get_sample_value("x_seconds_sum") - theirs.get_sample_value("x_seconds_sum")) < 1e-9
    assert ours.get_sample_value("x_seconds_bucket", {"le": "5e-05"}) == sum(v <= 0.00005 for v in values)
