"""The enrolment API's options: a named cycle, an initial balance, and re-enrolment resuming or resetting."""

from __future__ import annotations

import pytest

from .builders import (
    close,
    closes,
    custom,
    definition,
    enrolment,
    kinds,
    load,
    outputs,
    progress,
    rolling,
    send,
    target,
    txn,
)

FEB = "2024-02-05T10:00:00+05:30"


def _monthly_5000(**fields):
    subs = [{"name": "Halfway", "criterion": "absolute", "value": "4000"}]
    return definition(targets=[target(value="5000", sub_targets=subs)], enrolment={"method": "none"}, **fields)


# --------------------------------------------------------------- initial balance
def test_initial_balance_and_purchases_reach_the_target_together(driver):
    """Enrolled with 3,000: a 1,000 purchase reaches the 4,000 sub-target, another 1,000 the 5,000 target."""
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB, initial_balance={"t1": "3000"}))
    assert progress(driver, "c1", "m1", "t1", 2) == 3000
    assert kinds(driver) == []
    send(driver, txn("c1", "2024-02-06T10:00:00+05:30", "1000"))
    assert kinds(driver) == [("sub_target", "t1", 2)]
    send(driver, txn("c1", "2024-02-07T10:00:00+05:30", "1000"))
    events = outputs(driver)
    assert [e.kind for e in events] == ["sub_target", "achievement"]
    achieved = events[1]
    assert str(achieved.achieved_value) == "5000"
    assert str(achieved.targets[0].initial_balance) == "3000"  # outputs say how much of it was the balance


def test_initial_balance_alone_can_reach_the_target_at_enrolment(driver):
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB, initial_balance={"t1": "5000"}))
    assert kinds(driver) == [("sub_target", "t1", 2), ("achievement", "t1", 2)]


def test_initial_balance_is_for_the_cycle_enrolled_into_only(driver):
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB, initial_balance={"t1": "3000"}))
    close(driver, "2024-03-01T00:00:00+05:30")
    assert closes(driver) == [("c1", 2, "3000")]
    assert outputs(driver)[-1].targets[0].initial_balance is not None
    assert progress(driver, "c1", "m1", "t1", 3) == 0  # March starts from zero
    close(driver, "2024-04-01T00:00:00+05:30")
    assert closes(driver)[-1] == ("c1", 3, "0")
    assert outputs(driver)[-1].targets[0].initial_balance is None  # no balance, no field


def test_initial_balance_of_a_rolling_milestone_goes_to_the_first_cycle(driver):
    load(driver, definition(cycles=rolling("weekly", 4), targets=[target(value="5000")], enrolment={"method": "none"}))
    send(driver, enrolment("c1", "m1", FEB, initial_balance={"t1": "3000"}))
    send(driver, txn("c1", "2024-02-06T10:00:00+05:30", "2000"))
    assert kinds(driver) == [("achievement", "t1", 1)]


def test_initial_balance_for_a_target_the_milestone_lacks_is_dead_lettered(driver):
    load(driver, _monthly_5000())
    processed = driver.pipe("enrolments", "c1", enrolment("c1", "m1", FEB, initial_balance={"nope": "3000"}))
    assert processed.outcome == "invalid_enrolment"
    assert "has no target 'nope'" in driver.read("dead-letters")[-1]["detail"]
    send(driver, txn("c1", "2024-02-06T10:00:00+05:30", "6000"))
    assert kinds(driver) == []  # the rejected enrolment enrolled nobody


# ------------------------------------------------------------------ re-enrolment
def _enrolled_then_unenrolled(driver, reenrol: str | None):
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB, initial_balance={"t1": "3000"}))
    send(driver, enrolment("c1", "m1", "2024-02-08T10:00:00+05:30", action="unenrol"))
    options = {} if reenrol is None else {"reenrol": reenrol}
    send(driver, enrolment("c1", "m1", "2024-02-10T10:00:00+05:30", **options))


@pytest.mark.parametrize("reenrol", [None, "resume"])
def test_reenrolment_resumes_the_earlier_progress_by_default(driver, reenrol):
    _enrolled_then_unenrolled(driver, reenrol)
    assert progress(driver, "c1", "m1", "t1", 2) == 3000
    send(driver, txn("c1", "2024-02-11T10:00:00+05:30", "2000"))
    assert kinds(driver) == [("sub_target", "t1", 2), ("achievement", "t1", 2)]


def test_reenrolment_with_reset_starts_from_zero(driver):
    _enrolled_then_unenrolled(driver, "reset")
    assert progress(driver, "c1", "m1", "t1", 2) == 0
    send(driver, txn("c1", "2024-02-11T10:00:00+05:30", "2000"))
    assert kinds(driver) == []
    send(driver, txn("c1", "2024-02-12T10:00:00+05:30", "3000"))
    assert kinds(driver) == [("sub_target", "t1", 2), ("achievement", "t1", 2)]
    close(driver, "2024-03-01T00:00:00+05:30")
    assert closes(driver) == [("c1", 2, "5000")]  # the February close is still sent, once


def test_reset_drops_activity_while_unenrolled_too(driver):
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB))
    send(driver, txn("c1", "2024-02-06T10:00:00+05:30", "1000"))
    send(driver, enrolment("c1", "m1", "2024-02-08T10:00:00+05:30", action="unenrol"))
    send(driver, txn("c1", "2024-02-09T10:00:00+05:30", "1000"))
    send(driver, enrolment("c1", "m1", "2024-02-10T10:00:00+05:30", reenrol="reset"))
    assert progress(driver, "c1", "m1", "t1", 2) == 0


def test_reset_does_not_award_a_cycle_twice(driver):
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB))
    send(driver, txn("c1", "2024-02-06T10:00:00+05:30", "5000"))
    send(driver, enrolment("c1", "m1", "2024-02-08T10:00:00+05:30", action="unenrol"))
    send(driver, enrolment("c1", "m1", "2024-02-10T10:00:00+05:30", reenrol="reset"))
    send(driver, txn("c1", "2024-02-11T10:00:00+05:30", "5000"))
    assert kinds(driver) == [("sub_target", "t1", 2), ("achievement", "t1", 2)]


# ------------------------------------------------------------------ named cycles
def _custom_periods(**fields):
    periods = custom(("Spring", "2024-03-01", "2024-05-31"), ("Summer", "2024-06-01", "2024-08-31"))
    # Custom periods take a customer list (the spec's table), here of someone else.
    return definition(
        cycles=periods,
        targets=[target(value="5000")],
        enrolment={"method": "specific", "customers": ["someone-else"]},
        starts_at="2024-03-01T00:00:00+05:30",
        **fields,
    )


def test_enrolling_into_a_named_future_cycle_counts_nothing_before_it(driver):
    load(driver, _custom_periods())
    send(driver, enrolment("c1", "m1", "2024-03-10T10:00:00+05:30", cycle="Summer"))
    send(driver, txn("c1", "2024-03-11T10:00:00+05:30", "6000"))  # Spring: not enrolled in it
    assert kinds(driver) == []
    close(driver, "2024-06-01T00:00:00+05:30")
    assert closes(driver) == []  # no Spring close for a customer enrolled from Summer
    send(driver, txn("c1", "2024-06-02T10:00:00+05:30", "2000"))
    assert progress(driver, "c1", "m1", "t1", 2) == 2000
    close(driver, "2024-09-01T00:00:00+05:30")
    assert closes(driver) == [("c1", 2, "2000")]
    assert outputs(driver)[-1].cycle.name == "Summer"


def test_a_named_cycle_with_an_initial_balance(driver):
    load(driver, _custom_periods())
    send(driver, enrolment("c1", "m1", "2024-03-10T10:00:00+05:30", cycle="Summer", initial_balance={"t1": "3000"}))
    send(driver, txn("c1", "2024-03-11T10:00:00+05:30", "2000"))
    assert kinds(driver) == []
    send(driver, txn("c1", "2024-06-02T10:00:00+05:30", "2000"))
    assert [(e.kind, e.cycle.name, str(e.achieved_value)) for e in outputs(driver)] == [
        ("achievement", "Summer", "5000")
    ]


def test_a_calendar_cycle_is_named_by_its_number(driver):
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB, cycle="#4"))  # April
    send(driver, txn("c1", "2024-03-11T10:00:00+05:30", "6000"))
    assert kinds(driver) == []
    send(driver, txn("c1", "2024-04-02T10:00:00+05:30", "6000"))
    assert kinds(driver) == [("sub_target", "t1", 4), ("achievement", "t1", 4)]


def test_a_calendar_cycle_is_also_named_as_outputs_name_it(driver):
    load(driver, _monthly_5000())
    send(driver, enrolment("c1", "m1", FEB, cycle="Milestone m1 #3"))
    send(driver, txn("c1", "2024-03-02T10:00:00+05:30", "6000"))
    assert kinds(driver) == [("sub_target", "t1", 3), ("achievement", "t1", 3)]


def test_enrolling_into_the_running_cycle_counts_its_earlier_activity(driver):
    load(driver, _custom_periods())
    send(driver, txn("c1", "2024-03-05T10:00:00+05:30", "6000"))
    send(driver, enrolment("c1", "m1", "2024-03-10T10:00:00+05:30", cycle="Spring"))
    assert kinds(driver) == [("achievement", "t1", 1)]


@pytest.mark.parametrize(
    ("cycle", "reason"),
    [
        ("Autumn", "has no cycle 'Autumn'"),
        ("#3", "has no cycle '#3'"),
        ("Spring", "ended at"),
    ],
)
def test_an_unknown_or_ended_cycle_is_dead_lettered(driver, cycle, reason):
    load(driver, _custom_periods())
    processed = driver.pipe("enrolments", "c1", enrolment("c1", "m1", "2024-06-10T10:00:00+05:30", cycle=cycle))
    assert processed.outcome == "invalid_enrolment"
    assert reason in driver.read("dead-letters")[-1]["detail"]


def test_a_named_cycle_of_a_rolling_milestone_is_dead_lettered(driver):
    load(driver, definition(cycles=rolling("weekly", 4), enrolment={"method": "none"}))
    processed = driver.pipe("enrolments", "c1", enrolment("c1", "m1", FEB, cycle="#1"))
    assert processed.outcome == "invalid_enrolment"
