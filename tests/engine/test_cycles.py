"""Milestone cycles: fixed calendar windows, cyclic windows, till target achievement,
custom periods, the milestone duration and backdated milestones."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from milestream.engine.cycles import calendar_window, fixed_window_at, rolling_window, rolling_window_at
from milestream.schemas.definitions import MilestoneDefinition

from .builders import (
    calendar,
    custom,
    definition,
    kinds,
    load,
    outputs,
    progress,
    rolling,
    send,
    target,
    till_achieved,
    txn,
)

UTC = timezone.utc


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def count_target(value: str = "1") -> dict:
    return target("visits", "Visit", kpi="count", value=value)


# ------------------------------------------------------------ fixed calendar
def test_daily_fixed_window_created_at_11_has_a_13_hour_first_cycle(driver):
    """A daily fixed-calendar milestone created at 11:00 tracks 11:00-24:00 on its first
    day: the day ends sharply at local midnight, later cycles are whole days."""
    load(
        driver,
        definition(
            starts_at="2024-05-15T11:00:00+05:30",
            ends_at="2024-05-18T00:00:00+05:30",
            cycles=calendar("daily", "2024-05-15", 3),
            targets=[count_target("1")],
        ),
    )
    send(driver, txn("early", "2024-05-15T10:59:59+05:30"))  # before the milestone started
    send(driver, txn("c1", "2024-05-15T23:59:59+05:30"))
    send(driver, txn("c2", "2024-05-16T00:00:00+05:30"))
    first, second = outputs(driver)
    assert (first.customer_id, first.cycle.index) == ("c1", 1)
    assert first.cycle.start == utc("2024-05-15T11:00:00+05:30")
    assert first.cycle.end == utc("2024-05-16T00:00:00+05:30")
    assert first.cycle.end - first.cycle.start == timedelta(hours=13)
    assert (second.customer_id, second.cycle.index) == ("c2", 2)
    assert second.cycle.end - second.cycle.start == timedelta(hours=24)


def test_fixed_window_day_ends_at_local_midnight_not_utc_midnight(driver):
    load(
        driver,
        definition(cycles=calendar("daily", "2024-03-01", 5), targets=[count_target("2")]),
    )
    # 23:50 and 00:10 IST are the same UTC day but two local days.
    send(driver, txn("c1", "2024-03-01T23:50:00+05:30"), txn("c1", "2024-03-02T00:10:00+05:30"))
    assert outputs(driver) == []
    assert progress(driver, "c1", "m1", "visits", 1) == 1
    assert progress(driver, "c1", "m1", "visits", 2) == 1


# -------------------------------------------------------------- cyclic window
def test_cyclic_window_first_transaction_at_11_runs_exactly_24_hours(driver):
    load(
        driver,
        definition(cycles=rolling("daily", 5), targets=[count_target("2")]),
    )
    send(driver, txn("c1", "2024-05-15T11:00:00+05:30"), txn("c1", "2024-05-16T10:59:59+05:30"))
    (event,) = outputs(driver)
    assert event.cycle.index == 1
    assert event.cycle.start == utc("2024-05-15T11:00:00+05:30")
    assert event.cycle.end == utc("2024-05-16T11:00:00+05:30")
    assert event.cycle.end - event.cycle.start == timedelta(hours=24)

    # Exactly 24 hours later is already the second cycle.
    send(driver, txn("c2", "2024-05-15T11:00:00+05:30"), txn("c2", "2024-05-16T11:00:00+05:30"))
    assert [e.customer_id for e in outputs(driver)] == ["c1"]
    assert progress(driver, "c2", "m1", "visits", 1) == 1
    assert progress(driver, "c2", "m1", "visits", 2) == 1


def test_daily_cyclic_window_is_24_real_hours_across_a_daylight_saving_change(driver):
    """Decision: "24 hours" is elapsed time, so across the spring-forward night in New
    York a cycle from 11:00 EST ends at 12:00 EDT on the local clock."""
    load(
        driver,
        definition(
            cycles=rolling("daily", 3),
            targets=[count_target("1")],
            timezone="America/New_York",
            starts_at="2024-03-01T00:00:00-05:00",
            ends_at="2024-04-01T00:00:00-04:00",
        ),
    )
    send(driver, txn("c1", "2024-03-09T11:00:00-05:00"))
    (event,) = outputs(driver)
    assert event.cycle.end == utc("2024-03-10T12:00:00-04:00")
    assert event.cycle.end - event.cycle.start == timedelta(hours=24)


def test_cyclic_window_is_anchored_on_each_customers_own_first_transaction(driver):
    load(driver, definition(cycles=rolling("weekly", 3), targets=[count_target("1")]))
    send(driver, txn("a", "2024-02-01T09:00:00+05:30"), txn("b", "2024-02-03T18:30:00+05:30"))
    a, b = outputs(driver)
    assert a.cycle.start == utc("2024-02-01T09:00:00+05:30")
    assert a.cycle.end == utc("2024-02-08T09:00:00+05:30")
    assert b.cycle.start == utc("2024-02-03T18:30:00+05:30")
    assert b.cycle.end == utc("2024-02-10T18:30:00+05:30")


def test_cyclic_window_ignores_activity_after_its_last_cycle(driver):
    load(driver, definition(cycles=rolling("daily", 2), targets=[count_target("1")]))
    send(
        driver,
        txn("c1", "2024-05-01T08:00:00+05:30"),
        txn("c1", "2024-05-02T08:00:00+05:30"),
        txn("c1", "2024-05-03T08:00:00+05:30"),  # a third cycle does not exist
    )
    assert kinds(driver) == [("achievement", "visits", 1), ("achievement", "visits", 2)]


def test_monthly_cyclic_window_from_the_31st_clamps_to_the_end_of_shorter_months():
    """Decision: monthly cyclic cycles keep the first activity's day and time of day,
    clamped to the month's last day (31 Jan -> 29 Feb -> 31 Mar)."""
    model = MilestoneDefinition.model_validate(
        definition(
            cycles=rolling("monthly", 3),
            targets=[count_target()],
            timezone="UTC",
            starts_at="2024-01-01T00:00:00Z",
            ends_at="2025-01-01T00:00:00Z",
        )
    )
    anchor = utc("2024-01-31T10:00:00+00:00")
    assert [(w.start, w.end) for w in (rolling_window(model, anchor, i) for i in (1, 2, 3))] == [
        (utc("2024-01-31T10:00:00+00:00"), utc("2024-02-29T10:00:00+00:00")),
        (utc("2024-02-29T10:00:00+00:00"), utc("2024-03-31T10:00:00+00:00")),
        (utc("2024-03-31T10:00:00+00:00"), utc("2024-04-30T10:00:00+00:00")),
    ]
    assert rolling_window_at(model, anchor, utc("2024-02-29T09:59:59+00:00")).index == 1
    assert rolling_window_at(model, anchor, utc("2024-02-29T10:00:00+00:00")).index == 2
    assert rolling_window_at(model, anchor, utc("2024-04-30T10:00:00+00:00")) is None


# ----------------------------------------------------- till target achievement
def test_till_target_achievement_resets_immediately_and_respects_max_cycles(driver):
    load(
        driver,
        definition(cycles=till_achieved(max_cycles=2), targets=[count_target("3")]),
    )
    times = [f"2024-03-01T{hour:02d}:00:00+05:30" for hour in range(10, 18)]
    send(driver, *(txn("c1", when) for when in times))
    events = outputs(driver)
    assert [(e.kind, e.cycle.index) for e in events] == [
        ("achievement", 1),
        ("cycle_close", 1),
        ("achievement", 2),
        ("cycle_close", 2),
    ]
    # The first cycle starts at the first transaction, the next one at the achieving one.
    assert events[0].cycle.start == utc(times[0])
    assert events[2].cycle.start == utc(times[2])
    assert events[0].occurred_at == utc(times[2])
    assert events[2].occurred_at == utc(times[5])
    assert [e.achieved_value for e in events] == [Decimal(3)] * 4
    assert progress(driver, "c1", "m1", "visits", 3) == 0  # the 7th and 8th are past max cycles


def test_till_target_achievement_does_not_carry_the_excess_into_the_next_cycle(driver):
    """Decision: the next cycle starts from zero; what exceeded the target in the
    achieving transaction does not count towards the next cycle."""
    load(driver, definition(cycles=till_achieved(), targets=[target(value="5000")]))
    send(driver, txn("c1", "2024-03-01T10:00:00+05:30", "7000"))
    send(driver, txn("c1", "2024-03-02T10:00:00+05:30", "3000"))
    assert kinds(driver) == [("achievement", "t1", 1), ("cycle_close", "t1", 1)]
    assert progress(driver, "c1", "m1", "t1", 2) == 3000
    send(driver, txn("c1", "2024-03-03T10:00:00+05:30", "2000"))
    last = outputs(driver)[-2]
    assert (last.kind, last.cycle.index, last.achieved_value) == ("achievement", 2, Decimal(5000))


def test_till_target_achievement_close_event_reports_the_achieving_record_and_moment(driver):
    """Decision: the close event of a period-agnostic cycle ends the cycle at the
    achieving activity, and its cause is the input record that achieved it."""
    load(driver, definition(cycles=till_achieved(), targets=[target(value="5000")]))
    send(driver, txn("c1", "2024-03-01T10:00:00+05:30", "2000"), txn("c1", "2024-03-04T12:00:00+05:30", "3000"))
    achievement, close = outputs(driver)
    assert close.kind == "cycle_close"
    assert close.cycle.start == utc("2024-03-01T10:00:00+05:30")
    assert close.cycle.end == utc("2024-03-04T12:00:00+05:30")
    assert close.cause == achievement.cause == "milestream.transactions/0/1"
    assert achievement.cycle.end is None  # open-ended while it runs


def test_till_target_achievement_starts_on_the_first_transaction_within_the_duration(driver):
    load(
        driver,
        definition(starts_at="2024-03-01T00:00:00+05:30", cycles=till_achieved(), targets=[count_target("2")]),
    )
    send(driver, txn("c1", "2024-02-28T10:00:00+05:30"))  # before the milestone: no anchor
    send(driver, txn("c1", "2024-03-05T10:00:00+05:30"), txn("c1", "2024-03-06T10:00:00+05:30"))
    (achievement, _close) = outputs(driver)
    assert achievement.cycle.start == utc("2024-03-05T10:00:00+05:30")


# ---------------------------------------------- calendar frequencies, timezone
NEW_YORK = dict(timezone="America/New_York", starts_at="2024-01-01T00:00:00-05:00", ends_at="2026-06-01T00:00:00-04:00")


def _model(cycles: dict) -> MilestoneDefinition:
    return MilestoneDefinition.model_validate(definition(cycles=cycles, targets=[count_target()], **NEW_YORK))


@pytest.mark.parametrize(
    "frequency,count,boundaries",
    [
        ("weekly", 2, ["2024-03-04T05:00:00", "2024-03-11T04:00:00", "2024-03-18T04:00:00"]),
        (
            "quarterly",
            4,
            [
                "2024-01-01T05:00:00",
                "2024-04-01T04:00:00",
                "2024-07-01T04:00:00",
                "2024-10-01T04:00:00",
                "2025-01-01T05:00:00",
            ],
        ),
        ("half_yearly", 2, ["2024-01-01T05:00:00", "2024-07-01T04:00:00", "2025-01-01T05:00:00"]),
        ("yearly", 2, ["2024-01-01T05:00:00", "2025-01-01T05:00:00", "2026-01-01T05:00:00"]),
    ],
)
def test_calendar_frequencies_start_at_local_midnight_in_new_york(frequency, count, boundaries):
    """Boundaries are New York midnights, so they move by an hour across daylight saving."""
    start = "2024-03-04" if frequency == "weekly" else "2024-01-01"
    model = _model(calendar(frequency, start, count))
    expected = [utc(b + "+00:00") for b in boundaries]
    windows = [calendar_window(model, i) for i in range(1, count + 1)]
    assert [w.start for w in windows] == expected[:-1]
    assert [w.end for w in windows] == expected[1:]
    for i, boundary in enumerate(expected[1:-1], start=1):
        assert fixed_window_at(model, boundary - timedelta(microseconds=1)).index == i
        assert fixed_window_at(model, boundary).index == i + 1
    assert fixed_window_at(model, expected[0] - timedelta(microseconds=1)) is None
    assert fixed_window_at(model, expected[-1]) is None


def test_quarter_boundary_follows_the_milestone_timezone_in_the_pipeline(driver):
    load(driver, definition(cycles=calendar("quarterly", "2024-01-01", 4), targets=[count_target("1")], **NEW_YORK))
    # 1 April 02:00 UTC is still 31 March in New York: first quarter.
    send(driver, txn("c1", "2024-04-01T02:00:00+00:00"), txn("c2", "2024-04-01T04:00:00+00:00"))
    assert [(e.customer_id, e.cycle.index, e.cycle.name) for e in outputs(driver)] == [
        ("c1", 1, "Milestone m1 #1"),
        ("c2", 2, "Milestone m1 #2"),
    ]


def test_monthly_calendar_cycles_from_the_31st_keep_the_31st_when_the_month_has_it():
    model = _model(calendar("monthly", "2024-01-31", 3))
    starts = [calendar_window(model, i).start.astimezone(model.zone).date().isoformat() for i in (1, 2, 3)]
    assert starts == ["2024-01-31", "2024-02-29", "2024-03-31"]
    assert fixed_window_at(model, utc("2024-03-30T12:00:00-04:00")).index == 2


# ------------------------------------------------------------- custom periods
def test_custom_periods_have_their_own_names_inclusive_ends_and_no_tracking_in_gaps(driver):
    load(
        driver,
        definition(
            starts_at="2024-10-01T00:00:00+05:30",
            cycles=custom(("Diwali week", "2024-10-28", "2024-11-03"), ("Christmas", "2024-12-20", "2024-12-31")),
            targets=[target(value="1000")],
        ),
    )
    send(
        driver,
        txn("a", "2024-11-03T23:59:00+05:30", "1000"),  # last minute of the inclusive end day
        txn("b", "2024-11-10T12:00:00+05:30", "5000"),  # between the periods
        txn("c", "2024-12-20T00:00:00+05:30", "1000"),
    )
    a, c = outputs(driver)
    assert (a.customer_id, a.cycle.index, a.cycle.name) == ("a", 1, "Diwali week")
    assert a.cycle.start == utc("2024-10-28T00:00:00+05:30")
    assert a.cycle.end == utc("2024-11-04T00:00:00+05:30")
    assert (c.customer_id, c.cycle.index, c.cycle.name) == ("c", 2, "Christmas")


def test_unnamed_custom_periods_are_named_after_the_milestone(driver):
    load(
        driver,
        definition(
            cycles=custom((None, "2024-02-01", "2024-02-10"), (None, "2024-02-11", "2024-02-20")),
            targets=[count_target("1")],
        ),
    )
    send(driver, txn("c1", "2024-02-15T10:00:00+05:30"))
    assert outputs(driver)[0].cycle.name == "Milestone m1 #2"


# ---------------------------------------------------------- milestone duration
def test_no_tracking_between_the_milestone_start_and_the_first_cycle(driver):
    load(
        driver,
        definition(
            starts_at="2024-01-01T00:00:00+05:30",
            cycles=calendar("monthly", "2024-02-01", 3),
            targets=[count_target("1")],
        ),
    )
    send(driver, txn("c1", "2024-01-20T10:00:00+05:30"))
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-02-01T00:00:00+05:30"))
    assert kinds(driver) == [("achievement", "visits", 1)]


# ---------------------------------------------------------- backdated milestones
def load_backdated(driver, ends_at, months):
    """The spec's backdated milestone: 5,000 a month from 1 Jan 2024 (IST)."""
    load(
        driver,
        definition(
            starts_at="2024-01-01T00:00:00+05:30",
            ends_at=ends_at,
            cycles=calendar("monthly", "2024-01-01", months),
            targets=[target(value="5000")],
        ),
    )


def test_case_2_past_milestone_tracks_reprocessed_events_that_carry_their_recorded_time(driver):
    """Case 2: on 15 May 2024 a milestone running 1 Jan - 31 Mar 2024 is created and
    the past data is re-processed. Decision: a re-processed record carries the time it
    was originally recorded (``recorded_at``); lateness is judged on that, so it counts."""
    load_backdated(driver, ends_at="2024-04-01T00:00:00+05:30", months=3)
    today = "2024-05-15T10:00:00+05:30"
    send(
        driver,
        txn("c1", "2024-02-10T10:00:00+05:30", "3000", recorded_at="2024-02-10T10:00:05+05:30"),
        txn("c1", "2024-02-20T10:00:00+05:30", "2500", recorded_at="2024-02-20T10:00:05+05:30"),
        txn("c1", "2024-03-31T23:00:00+05:30", "5000", recorded_at="2024-03-31T23:00:05+05:30"),
        timestamp=today,
    )
    assert kinds(driver) == [("achievement", "t1", 2), ("achievement", "t1", 3)]
    assert driver.read("late-events") == []


def test_case_2_reprocessed_events_without_their_recorded_time_are_late(driver):
    """Without ``recorded_at`` a re-processed record is judged on the time it was
    re-published (15 May): long after its cycle, so it is reported as late."""
    load_backdated(driver, ends_at="2024-04-01T00:00:00+05:30", months=3)
    send(driver, txn("c1", "2024-02-10T10:00:00+05:30", "6000"), timestamp="2024-05-15T10:00:00+05:30")
    assert outputs(driver) == []
    (late,) = driver.read("late-events")
    assert (late["customer_id"], late["cycle_index"], late["cycle_end"]) == ("c1", 2, "2024-02-29T18:30:00.000000Z")


def test_case_1_past_start_tracks_reprocessed_past_data_and_live_data(driver):
    """Case 1: created on 15 May 2024, running 1 Jan - 1 Jun 2024. Data up to 14 May is
    re-processed with its recorded time; from 15 May on it is tracked as it arrives."""
    load_backdated(driver, ends_at="2024-06-01T00:00:00+05:30", months=5)
    today = "2024-05-15T10:00:00+05:30"
    send(
        driver,
        txn("c1", "2024-01-20T10:00:00+05:30", "6000", recorded_at="2024-01-20T10:00:01+05:30"),
        txn("c1", "2024-05-10T10:00:00+05:30", "3000", recorded_at="2024-05-10T10:00:01+05:30"),
        timestamp=today,
    )
    send(driver, txn("c1", "2024-05-20T10:00:00+05:30", "2500"))  # live
    assert kinds(driver) == [("achievement", "t1", 1), ("achievement", "t1", 5)]
    assert outputs(driver)[-1].achieved_value == Decimal(5500)


def test_buffer_days_let_a_late_recorded_purchase_count_in_its_own_cycle(driver):
    """A 31 Jan purchase recorded on 3 Feb counts for January when the buffer is 5 days."""
    body = definition(targets=[target(value="5000")], settings={"buffer_days": 5})
    load(driver, body)
    send(driver, txn("c1", "2024-01-31T20:00:00+05:30", "5000"), timestamp="2024-02-03T10:00:00+05:30")
    assert kinds(driver) == [("achievement", "t1", 1)]
    assert driver.read("late-events") == []


def test_without_buffer_days_a_purchase_recorded_after_its_cycle_is_late(driver):
    load(driver, definition(targets=[target(value="5000")]))
    send(driver, txn("c1", "2024-01-31T20:00:00+05:30", "5000"), timestamp="2024-02-03T10:00:00+05:30")
    assert outputs(driver) == []
    assert [e["cycle_index"] for e in driver.read("late-events")] == [1]
