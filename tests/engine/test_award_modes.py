"""The spec's ENABLE_AWARD_WHEN_TARGET_ACHIEVED table, row by row.

Milestream's events carry ``kind`` and ``is_target_achieved_event``; a promotion
rule on the flag behaves as the table says, and a consumer with no rule can tell
the events apart by ``kind``. Each test runs a month in which the customer crosses
the target, then closes the month (event time passes its end).
"""

import io

import orjson
import pytest

from milestream.simulate import run
from tests.factories import monthly_gross_definition, transaction


def month(award_when_target_achieved: bool, sub_targets=()):
    definition = monthly_gross_definition(settings={"award_when_target_achieved": award_when_target_achieved})
    definition["group"]["targets"][0]["sub_targets"] = list(sub_targets)
    events = [
        transaction("c1", "3000", "2024-01-05T10:00:00+05:30", 1),
        transaction("c1", "2500", "2024-01-20T10:00:00+05:30", 2),
        transaction("c2", "1000", "2024-01-21T10:00:00+05:30", 3),  # never reaches the target
        transaction("c1", "10", "2024-02-02T10:00:00+05:30", 4),  # event time passes the January close
        transaction("c2", "10", "2024-02-02T11:00:00+05:30", 5),
    ]
    out = io.BytesIO()
    run(orjson.dumps(definition).decode(), io.BytesIO(b"\n".join(orjson.dumps(e) for e in events)), out, io.StringIO())
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def rule(event, written: bool | None):
    """Would a promotion with targetAchieved > targetDefined (+ the flag rule, if written) fire?"""
    reached = event["achieved"]
    return reached if written is None else reached and event["is_target_achieved_event"] is written


def january(events):
    return [e for e in events if e["cycle"]["index"] == 1]


def test_active_with_rule_true_fires_once_when_the_target_is_achieved():
    events = january(month(True))
    assert [(e["kind"], e["customer_id"]) for e in events] == [
        ("achievement", "c1"),
        ("cycle_close", "c1"),
        ("cycle_close", "c2"),
    ]
    assert [e["kind"] for e in events if rule(e, True)] == ["achievement"]


def test_active_with_rule_false_fires_once_at_the_end_of_the_cycle():
    events = january(month(True))
    assert [(e["kind"], e["customer_id"]) for e in events if rule(e, False)] == [("cycle_close", "c1")]


def test_active_without_the_rule_the_event_comes_twice_and_kind_tells_them_apart():
    events = january(month(True))
    fired = [e for e in events if rule(e, None)]
    assert [e["kind"] for e in fired] == ["achievement", "cycle_close"]  # benefits twice, as the spec warns
    assert fired[0]["event_id"] != fired[1]["event_id"]


@pytest.mark.parametrize("written", [True, False])
def test_inactive_sends_only_the_end_of_cycle_event_for_every_customer(written):
    events = january(month(False))
    assert [(e["kind"], e["customer_id"], e["achieved"]) for e in events] == [
        ("cycle_close", "c1", True),
        ("cycle_close", "c2", False),  # non-achievers get it too, so rules can use the gap
    ]
    assert events[1]["gap"] == "4000"
    assert all(e["is_target_achieved_event"] is False for e in events)
    fired = [e["customer_id"] for e in events if rule(e, written)]
    assert fired == ([] if written else ["c1"])


def test_sub_target_actions_follow_the_award_setting():
    """Use case 6: a 70 % sub-target takes effect immediately or at the end of the period."""
    seventy = [{"name": "Seventy", "criterion": "percentage", "value": "70"}]
    immediate = january(month(True, seventy))
    deferred = january(month(False, seventy))
    assert [e["kind"] for e in immediate][:2] == ["sub_target", "achievement"]
    assert immediate[0]["occurred_at"] == "2024-01-20T04:30:00.000000Z"
    assert [(e["kind"], e["customer_id"]) for e in deferred] == [
        ("sub_target", "c1"),
        ("cycle_close", "c1"),
        ("cycle_close", "c2"),
    ]
    assert deferred[0]["occurred_at"] == "2024-01-31T18:30:00.000000Z"  # the end of January (IST)
    assert deferred[0]["event_id"] == immediate[0]["event_id"]  # same cause, same id, whichever mode
    assert deferred[0]["milestone_value_defined"] == "3500"
