"""The API benchmark's reading of a load: its rate over the middle, and the index's cost."""

from datetime import datetime, timezone

import pytest

from bench import api, inprocess


def test_the_steady_rate_is_over_the_middle_of_the_load():
    # 10 s of start-up with nothing committed, then 1,000 events/s to 10,000, then a slow tail.
    seen = [(float(t), 0) for t in range(10)] + [(10.0 + n, 1_000 * n) for n in range(10)] + [(30.0, 10_000)]
    assert api.steady(seen, 10_000) == pytest.approx(1_000.0)  # 2,000 at 12 s, 9,000 at 19 s


def test_no_steady_rate_without_the_middle_of_the_load():
    assert api.steady([(0.0, 0), (1.0, 10_000)], 10_000) == 0.0  # both ends in one sample
    assert api.steady([(0.0, 0), (1.0, 1_000)], 10_000) == 0.0  # never past 20 %


def test_the_index_cost_is_best_against_best_of_the_chosen_measure():
    throughput = {
        "off": [{"rate": 20_000.0, "steady": 30_000.0}, {"rate": 25_000.0, "steady": 29_000.0}],
        "on": [{"rate": 20_000.0, "steady": 27_000.0}, {"rate": 15_000.0, "steady": 28_500.0}],
    }
    assert api.index_cost(throughput) == pytest.approx(1 - 28_500 / 30_000)
    assert api.index_cost(throughput, "rate") == pytest.approx(1 - 20_000 / 25_000)


def test_the_in_process_note_states_the_index_per_record():
    note = api.in_process_note({"customers": 1_000, "checkpoint_records": 250, "off": [30.0, 31.0], "on": [36.0, 34.5]})
    assert "30.0, 31.0 µs a record with the leaderboard off, 36.0, 34.5 with it on" in note
    assert "adds **4.5 µs a record, 15.0%**" in note
    assert api.in_process_note(None) == "" and api.in_process_note({"off": [], "on": []}) == ""


def test_the_in_process_measure_runs_both_settings_in_turn():
    now = datetime.now(timezone.utc)
    measured = inprocess.index_cost(api.records(300, now, seed=3, tag="t"), now, checkpoint_records=100, rounds=2)
    assert [len(measured["off"]), len(measured["on"])] == [2, 2]
    assert all(value > 0 for values in measured.values() for value in values)
