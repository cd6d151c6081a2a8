import gc

from milestream import metrics
from milestream.worker import garbage


def _pauses(generation: int) -> tuple[float, float]:
    labels = {"generation": str(generation)}
    count = metrics.REGISTRY.get_sample_value("milestream_gc_pause_seconds_count", labels) or 0
    total = metrics.REGISTRY.get_sample_value("milestream_gc_pause_seconds_sum", labels) or 0
    return count, total


def test_every_collection_is_observed_by_generation():
    garbage.measure_pauses()
    garbage.measure_pauses()  # once per process, however often it is called
    assert gc.callbacks.count(garbage._observe) == 1
    (full, full_s), (young, _) = _pauses(2), _pauses(0)
    gc.collect(2)
    gc.collect(0)
    assert _pauses(2)[0] == full + 1
    assert _pauses(2)[1] > full_s  # a duration, not a count
    assert _pauses(0)[0] == young + 1
