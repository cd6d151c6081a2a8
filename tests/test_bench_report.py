"""The benchmark's floor of an event's cost: the parts it adds up and what it concludes."""

from datetime import datetime, timezone

import pytest

from bench import inprocess, report, workload


def results(quix: float | None = 50_000.0) -> dict:
    return {
        "raw": {"processing_rate": 500_000.0},  # 2 µs an event
        **({"quix": {"processing_rate": quix}} if quix else {}),
        "inprocess": {"engine": {"rate": 125_000.0}, "parts": {"decode_us": 4.0, "state_us": 3.0}},  # engine 8 µs
    }


def test_the_floor_adds_the_parts_and_bounds_the_rate():
    floor = report.floor(results())
    assert floor is not None
    assert floor["total_us"] == pytest.approx(2 + 4 + 8 + 3)
    assert floor["ceiling_rate"] == pytest.approx(1e6 / 17)
    assert floor["libraries_rate"] == pytest.approx(1e6 / 9)  # without Engine.apply
    assert floor["ceiling_x_quix"] == pytest.approx(1e6 / 17 / 50_000)
    note = report.floor_note(results())
    assert note is not None and "17.0 µs" in note and "58,824 events/s" in note
    assert "1.18 and 2.22 × the Quix app" in note


def test_no_floor_without_the_phases_it_needs():
    assert report.floor({"inprocess": results()["inprocess"]}) is None  # no raw consumer phase
    assert report.floor_note({}) is None
    assert "Quix" not in (report.floor_note(results(quix=None)) or "")


def test_the_parts_are_timed_on_the_engines_own_documents():
    now = datetime.now(timezone.utc)
    parts = inprocess.parts(workload.transactions(300, 20, now).records, now, checkpoint_records=100)
    assert parts["events"] == 300
    assert 0 < parts["decode_us"] < 10_000 and 0 < parts["state_us"] < 10_000
