import gc

from milestream import metrics
from milestream.worker import garbage


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0


def test_every_collection_is_observed_by_generation():
    garbage.measure_pauses()
    garbage.measure_pauses()  # once per process, however often it is called
    assert gc.callbacks.count(garbage.PAUSES.callback) == 1
    gc.disable()  # only the collections asked for below: none set off by allocations meanwhile
    try:
        full = _sample("milestream_gc_pause_seconds_count", generation="2")
        full_s = _sample("milestream_gc_pause_seconds_sum", generation="2")
        young = _sample("milestream_gc_pause_seconds_count", generation="0")
        gc.collect(2)
        gc.collect(0)
        after = (
            _sample("milestream_gc_pause_seconds_count", generation="2"),
            _sample("milestream_gc_pause_seconds_sum", generation="2"),
            _sample("milestream_gc_pause_seconds_count", generation="0"),
        )
    finally:
        gc.enable()
    assert after[0] == full + 1
    assert after[1] > full_s  # a duration, not a count
    assert after[2] == young + 1


def test_a_pause_is_counted_in_its_bucket_and_every_bucket_above():
    clock = iter([10.0, 10.03])  # a 30 ms full collection
    pauses = garbage.GcPauses(clock=lambda: next(clock))
    pauses.callback("start", {"generation": 2})
    pauses.callback("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    family, _frozen = pauses.collect()
    buckets = {
        s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket") and s.labels["generation"] == "2"
    }
    assert buckets["0.025"] == 0 and buckets["0.05"] == 1 and buckets["+Inf"] == 1
    total = [s.value for s in family.samples if s.name.endswith("_sum") and s.labels["generation"] == "2"]
    assert abs(total[0] - 0.03) < 1e-9


def test_start_up_objects_are_frozen_out_of_later_collections():
    garbage.measure_pauses()
    assert gc.get_freeze_count() == 0
    try:
        garbage.freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # this process's modules and classes at least
        assert _sample("milestream_gc_frozen_objects") == frozen
        made_since = [[n] for n in range(100)]
        assert any(made_since is o for o in gc.get_objects())  # what is made later is still collected
    finally:
        garbage.unfreeze()
    assert gc.get_freeze_count() == 0
    assert _sample("milestream_gc_frozen_objects") == 0
