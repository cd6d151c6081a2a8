"""Timestamps are ISO 8601 text with a timezone, dates ISO 8601 days, both from 1970 up to 2200.

Before, year 9999 or year 1 passed validation and raised OverflowError in the cycle arithmetic
behind it, and epoch numbers were taken for timestamps although the README promises ISO 8601.
"""

from __future__ import annotations

import copy
import io
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from milestream.schemas.codec import ALL_INPUT_MODELS, Decoder, Rejected, dumps
from milestream.simulate import run
from tests.engine.series_builders import series
from tests.factories import at, monthly_gross_definition, transaction

WHEN = "2024-01-05T10:00:00+05:30"
DECODER = Decoder(ALL_INPUT_MODELS, 1_000_000)

TIMESTAMP_FIELDS = [
    (transaction("c1", "10", WHEN, 1), ("event_time",)),
    (transaction("c1", "10", WHEN, 1, recorded_at=WHEN), ("recorded_at",)),
    (
        {"type": "enrolment", "event_id": "e1", "customer_id": "c1", "event_time": WHEN, "milestone_id": "m1"},
        ("event_time",),
    ),
    (monthly_gross_definition("m1"), ("starts_at",)),
    (monthly_gross_definition("m1"), ("ends_at",)),
    (series("s1", ends_at="2030-01-01T00:00:00Z"), ("starts_at",)),
    (series("s1", ends_at="2030-01-01T00:00:00Z"), ("ends_at",)),
    ({"type": "close_tick", "now": WHEN}, ("now",)),
]
_CUSTOM = monthly_gross_definition(
    "m1", cycles={"kind": "custom", "periods": [{"start": "2024-02-01", "end": "2024-02-10"}]}
)
DATE_FIELDS = [
    (monthly_gross_definition("m1"), ("cycles", "start_date")),
    (_CUSTOM, ("cycles", "periods", 0, "start")),
    (_CUSTOM, ("cycles", "periods", 0, "end")),
]

NOT_ISO = [1700000000, "1700000000", 1.7e9, "1700000000.5", True, "yesterday", "05/01/2024 10:00+05:30"]
OUT_OF_RANGE = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00",
    "1969-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
    "2200-01-01T06:00:00+05:30",
    # Local years inside the range, UTC outside it:
    "1970-01-01T05:00:00+05:30",
    "2199-12-31T20:00:00-05:00",
]
# The first and last moments of the range, in local time of either sign.
AT_THE_ENDS = [
    "1970-01-01T00:00:00Z",
    "1970-01-01T05:30:00+05:30",
    "1969-12-31T19:00:00-05:00",
    "2199-12-31T23:59:59.999999Z",
    "2199-12-31T18:59:59-05:00",
    "2200-01-01T05:29:59+05:30",
]


def _with(document: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node: Any = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return changed


def _rejection(document: dict[str, Any]) -> Rejected:
    with pytest.raises(Rejected) as rejected:
        DECODER.decode(dumps(document))
    assert rejected.value.reason == "schema_violation"
    return rejected.value


def _ids(fields):
    return [f"{d['type']}.{'.'.join(map(str, p))}" for d, p in fields]


@pytest.mark.parametrize("document, path", TIMESTAMP_FIELDS + DATE_FIELDS, ids=_ids(TIMESTAMP_FIELDS + DATE_FIELDS))
def test_the_documents_are_valid_as_they_are(document, path):
    DECODER.decode(dumps(document))


@pytest.mark.parametrize("document, path", TIMESTAMP_FIELDS, ids=_ids(TIMESTAMP_FIELDS))
@pytest.mark.parametrize("value", NOT_ISO, ids=repr)
def test_epoch_numbers_and_other_text_are_not_timestamps(document, path, value):
    detail = _rejection(_with(document, path, value)).detail
    assert f"{path[-1]}: must be an ISO 8601 date-time with a timezone" in detail


@pytest.mark.parametrize("document, path", TIMESTAMP_FIELDS, ids=_ids(TIMESTAMP_FIELDS))
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_timestamps_outside_1970_to_2200_are_a_schema_violation(document, path, value):
    detail = _rejection(_with(document, path, value)).detail
    assert f"{path[-1]}: must be from 1970-01-01 up to (not including) 2200-01-01" in detail


# Fields no other field of their document must follow or precede (a definition's start and end must be in order).
UNORDERED_FIELDS = [f for f in TIMESTAMP_FIELDS if f[0]["type"] not in ("milestone_definition", "milestone_series")]


@pytest.mark.parametrize("document, path", UNORDERED_FIELDS, ids=_ids(UNORDERED_FIELDS))
@pytest.mark.parametrize("value", AT_THE_ENDS)
def test_timestamps_at_either_end_of_the_range_are_accepted(document, path, value):
    DECODER.decode(dumps(_with(document, path, value)))


@pytest.mark.parametrize("document, path", TIMESTAMP_FIELDS, ids=_ids(TIMESTAMP_FIELDS))
def test_a_timestamp_needs_a_timezone(document, path):
    assert "timezone" in _rejection(_with(document, path, "2024-01-05T10:00:00")).detail


@pytest.mark.parametrize(
    "value",
    [
        "1970-01-01T00:00:00Z",
        "1970-01-01T05:30:00+05:30",
        "2199-12-31T23:59:59.999999Z",
        "2024-01-05 10:00:00+05:30",
        "2024-01-05T10:00+05:30",
    ],
)
def test_iso_timestamps_at_the_ends_of_the_range_are_accepted(value):
    event = DECODER.decode(dumps(transaction("c1", "10", value, 1)))
    assert event.event_time == datetime.fromisoformat(value)  # type: ignore[attr-defined]


@pytest.mark.parametrize("document, path", DATE_FIELDS, ids=_ids(DATE_FIELDS))
@pytest.mark.parametrize(
    "value",
    [20240201, "20240201", "2024-02-01T00:00:00Z", 1706745600, "9999-01-01", "0001-01-01", "1969-12-31", "2200-01-01"],
)
def test_dates_are_iso_days_within_the_range(document, path, value):
    detail = _rejection(_with(document, path, value)).detail
    assert f"{path[-1]}: must be " in detail


def test_a_definition_near_the_end_of_the_range_computes_its_cycles(driver):
    """The bound leaves room for the cycle arithmetic: 100 yearly cycles from 2199 do not overflow."""
    definition = monthly_gross_definition(
        "m-far",
        timezone="Pacific/Kiritimati",
        starts_at="2199-01-01T00:00:00+14:00",
        ends_at="2199-12-31T00:00:00Z",
        cycles={"kind": "calendar", "frequency": "yearly", "start_date": "2199-01-01", "count": 100},
        settings={"buffer_days": 90},
    )
    assert driver.pipe("definitions", "m-far", definition, timestamp=at("2199-01-01T00:00:00Z")).outcome == "applied"
    processed = driver.pipe(
        "transactions", "c1", transaction("c1", "6000", "2199-06-01T00:00:00Z", 1), timestamp=at("2199-06-01T00:00:00Z")
    )
    assert processed.outcome == "applied"
    (award,) = driver.read("promotions")
    assert award["cycle"]["end"] == "2199-12-31T10:00:00.000000Z"


@pytest.mark.parametrize("event_time", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00", 1700000000])
def test_a_transaction_at_the_edge_of_time_is_dead_lettered_as_a_schema_violation(driver, event_time):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=at(WHEN))
    processed = driver.pipe("transactions", "c1", transaction("c1", "6000", event_time, 1), timestamp=at(WHEN))
    assert processed.outcome == "schema_violation"
    (letter,) = driver.read("dead-letters")
    assert letter["reason"] == "schema_violation" and "event_time: must be" in letter["detail"]
    assert driver.read("promotions") == []


def test_the_simulator_reports_out_of_range_and_epoch_times_without_a_traceback():
    definition = monthly_gross_definition("m1")
    lines = [
        transaction("c1", "100", WHEN, 1),
        transaction("c1", "100", "9999-12-31T23:59:59Z", 2),
        transaction("c1", "100", "0001-01-01T00:00:00+05:00", 3),
        transaction("c1", "100", 1704430800, 4),
        transaction("c1", "100", WHEN, 5, recorded_at="9999-12-31T23:59:59Z"),
        transaction("c1", "5000", "2024-01-06T10:00:00+05:30", 6),
    ]
    events = io.BytesIO(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    out, err = io.BytesIO(), io.StringIO()

    outcomes = run(orjson.dumps(definition).decode(), events, out, err, until=datetime.max.replace(tzinfo=timezone.utc))

    assert outcomes["schema_violation"] == 4
    report = err.getvalue()
    assert report.count("rejected event") == 4 and "event_time: must be from 1970-01-01" in report
    assert "Traceback" not in report
    printed = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [e["reason"] for e in printed if e["type"] == "dead_letter"] == ["schema_violation"] * 4
    emitted = [e for e in printed if e["type"] == "milestone_event"]
    # The valid events still count (100 + 5,000), and closing every cycle still works.
    assert [(e["kind"], e["achieved_value"]) for e in emitted[:2]] == [("achievement", "5100"), ("cycle_close", "5100")]
    assert [e["kind"] for e in emitted[1:]] == ["cycle_close"] * 12  # one per monthly cycle
