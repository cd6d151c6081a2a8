"""Milestone achieved as an activity: counting another milestone's achievements, up to three levels."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.schemas.outputs import MilestoneEvent
from tests.engine.builders import customer_state
from tests.factories import at

STARTS, ENDS = "2024-01-01T00:00:00+00:00", "2024-04-01T00:00:00+00:00"


def milestone(mid, frequency, count, target, **extra):
    return {
        "type": "milestone_definition",
        "milestone_id": mid,
        "name": mid,
        "timezone": "UTC",
        "starts_at": extra.pop("starts_at", STARTS),
        "ends_at": extra.pop("ends_at", ENDS),
        "cycles": {"kind": "calendar", "frequency": frequency, "start_date": "2024-01-01", "count": count},
        "group": {"targets": [target]},
        **extra,
    }


def tracking(source, value, name="Achieved"):
    return {
        "target_id": "times",
        "name": name,
        "activity": "milestone_achieved",
        "kpi": "count",
        "source_milestone_id": source,
        "value": value,
    }


DAILY_STEPS = milestone(
    "daily-steps",
    "daily",
    91,
    {
        "target_id": "steps",
        "name": "5000 steps",
        "activity": "behavioural_event",
        "event_name": "walk",
        "kpi": "attribute_sum",
        "field": "steps",
        "value": "5000",
    },
)
WEEKLY = milestone("weekly-5-days", "weekly", 13, tracking("daily-steps", "5", "5 days a week"))
QUARTERLY = milestone("quarter-3-weeks", "quarterly", 1, tracking("weekly-5-days", "3", "3 weeks a quarter"))


def walk(driver, day, steps, n):
    when = f"2024-01-{day:02d}T08:00:00+00:00"
    event = {
        "type": "behavioural_event",
        "event_id": f"w{n}",
        "customer_id": "kim",
        "event_time": when,
        "name": "walk",
        "attributes": {"steps": steps},
    }
    return driver.pipe("behavioural-events", "kim", event, timestamp=at(when))


def achievements(driver, milestone_id):
    return [
        MilestoneEvent.model_validate(e)
        for e in driver.read("promotions")
        if e["milestone_id"] == milestone_id and e["kind"] == "achievement"
    ]


def test_walk_5000_steps_five_days_a_week_for_three_weeks_a_quarter(driver):
    """The spec's third-level example: daily → weekly → quarterly."""
    for definition in (DAILY_STEPS, WEEKLY, QUARTERLY):
        assert (
            driver.pipe("definitions", definition["milestone_id"], definition, timestamp=at(STARTS)).outcome
            == "applied"
        )
    n = 0
    for week in range(3):  # 1 Jan 2024 is a Monday: Mon-Fri of three weeks, plus a short Saturday
        for weekday in range(6):
            n += 1
            walk(driver, 1 + 7 * week + weekday, 6000 if weekday < 5 else 1000, n)
    assert len(achievements(driver, "daily-steps")) == 15
    weekly = achievements(driver, "weekly-5-days")
    assert [(e.cycle.index, e.achieved_value) for e in weekly] == [(1, 5), (2, 5), (3, 5)]
    (quarter,) = achievements(driver, "quarter-3-weeks")
    assert quarter.achieved_value == 3 and quarter.occurred_at == at("2024-01-19T08:00:00+00:00")


def test_each_nested_achievement_is_counted_once(driver):
    for definition in (DAILY_STEPS, WEEKLY):
        driver.pipe("definitions", definition["milestone_id"], definition, timestamp=at(STARTS))
    walk(driver, 1, 3000, 1)
    walk(driver, 1, 3000, 2)  # reaches the day's target
    walk(driver, 1, 9000, 3)  # more walking the same day: no second daily achievement
    walk(driver, 2, 6000, 4)
    state = customer_state(driver, "kim")
    assert state["m"]["weekly-5-days"]["c"]["1"]["t"]["times"]["v"] == "2"


@pytest.mark.parametrize(
    "tracker, message",
    [
        (milestone("w", "weekly", 13, tracking("nope", "5")), "does not exist"),
        (milestone("w", "daily", 91, tracking("daily-steps", "1")), "frequency"),
        (milestone("w", "weekly", 10, tracking("daily-steps", "5"), ends_at="2024-03-11T00:00:00+00:00"), "fit within"),
        ({**milestone("w", "weekly", 13, tracking("custom", "1"))}, "fixed calendar window"),
    ],
    ids=["unknown", "same-frequency", "does-not-fit", "not-calendar"],
)
def test_tracking_conditions_are_enforced(driver, tracker, message):
    driver.pipe("definitions", "daily-steps", DAILY_STEPS, timestamp=at(STARTS))
    custom = {
        **DAILY_STEPS,
        "milestone_id": "custom",
        "name": "custom",
        "cycles": {"kind": "custom", "periods": [{"start": "2024-01-01", "end": "2024-01-31"}]},
    }
    driver.pipe("definitions", "custom", custom, timestamp=at(STARTS))
    assert driver.pipe("definitions", "w", tracker, timestamp=at(STARTS)).outcome == "invalid_definition"
    assert message in driver.read("dead-letters")[-1]["detail"]


def test_an_inactive_milestone_cannot_be_tracked(driver):
    driver.pipe("definitions", "daily-steps", {**DAILY_STEPS, "active": False}, timestamp=at(STARTS))
    assert driver.pipe("definitions", "weekly-5-days", WEEKLY, timestamp=at(STARTS)).outcome == "invalid_definition"
    assert "active" in driver.read("dead-letters")[-1]["detail"]


def test_streak_counts_the_longest_run_of_consecutive_achieved_days(driver):
    """A 5-day streak in a week: missing a day breaks the run; the longest run counts."""
    streak = milestone(
        "weekly-streak",
        "weekly",
        13,
        {
            "target_id": "streak",
            "name": "5 days in a row",
            "activity": "milestone_achieved",
            "kpi": "streak",
            "source_milestone_id": "daily-steps",
            "value": "5",
        },
    )
    for definition in (DAILY_STEPS, streak):
        assert (
            driver.pipe("definitions", definition["milestone_id"], definition, timestamp=at(STARTS)).outcome
            == "applied"
        )
    n = 0
    # Week 1: Mon, Tue, Wed, (Thu missed), Fri, Sat, Sun -> runs of 3 and 3: no streak.
    for day in (1, 2, 3, 5, 6, 7):
        n += 1
        walk(driver, day, 6000, n)
    assert achievements(driver, "weekly-streak") == []
    assert customer_state(driver, "kim")["m"]["weekly-streak"]["c"]["1"]["t"]["streak"]["k"] == [1, 2, 3, 5, 6, 7]
    # Week 2: Mon to Fri in a row.
    for day in (8, 9, 10, 11, 12):
        n += 1
        walk(driver, day, 6000, n)
    (event,) = achievements(driver, "weekly-streak")
    assert (event.cycle.index, event.achieved_value) == (2, 5)


@pytest.mark.parametrize("indexes, longest", [([], 0), ([4], 1), ([1, 2, 3, 5, 6], 3), ([2, 3, 4, 5, 9], 4)])
def test_longest_run(indexes, longest):
    from milestream.engine.core import longest_run

    assert longest_run(indexes) == longest


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 14), st.sampled_from([2000, 6000])), max_size=25), st.data())
def test_nested_achievements_are_counted_once_each(walks, data):
    """Whatever the walks and redeliveries, a week counts each achieved day exactly once."""
    from milestream.pipeline.driver import TopologyTestDriver

    driver = TopologyTestDriver()
    for definition in (DAILY_STEPS, WEEKLY):
        driver.pipe("definitions", definition["milestone_id"], definition, timestamp=at(STARTS))
    totals: dict[int, int] = {}
    offsets = []
    for n, (day, steps) in enumerate(walks):
        offsets.append((day, steps, n))
        walk(driver, day, steps, n)
        totals[day] = totals.get(day, 0) + steps
        for again_day, again_steps, again_n in data.draw(st.lists(st.sampled_from(offsets), max_size=1)):
            when = f"2024-01-{again_day:02d}T08:00:00+00:00"
            body = {
                "type": "behavioural_event",
                "event_id": f"w{again_n}",
                "customer_id": "kim",
                "event_time": when,
                "name": "walk",
                "attributes": {"steps": again_steps},
            }
            assert (
                driver.pipe("behavioural-events", "kim", body, timestamp=at(when), offset=again_n).outcome
                == "duplicate"
            )
    state = customer_state(driver, "kim") or {}
    for week in (1, 2):
        achieved_days = sum(1 for d, total in totals.items() if (d - 1) // 7 + 1 == week and total >= 5000)
        counted = (
            state.get("m", {}).get("weekly-5-days", {}).get("c", {}).get(str(week), {}).get("t", {}).get("times", {})
        )
        assert int(counted.get("v", "0")) == achieved_days
