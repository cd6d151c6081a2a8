"""A unified group and a nested milestone through the real broker."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.worker import consume, produce

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
START = (NOW - timedelta(days=20)).replace(hour=0, minute=0, second=0, microsecond=0)
END = START + timedelta(days=60)


def milestone(mid, frequency, count, targets, **group):
    return {
        "type": "milestone_definition",
        "milestone_id": mid,
        "name": f"{mid} ({START:%Y%m%d})",
        "timezone": "UTC",
        "starts_at": START.isoformat(),
        "ends_at": END.isoformat(),
        "cycles": {"kind": "calendar", "frequency": frequency, "start_date": START.date().isoformat(), "count": count},
        "group": {"targets": targets, **group},
    }


DAILY_BOTH = milestone(
    "daily-both",
    "daily",
    60,
    [
        {
            "target_id": "walk",
            "name": "Walk",
            "activity": "behavioural_event",
            "event_name": "walk",
            "kpi": "count",
            "value": "1",
        },
        {
            "target_id": "read",
            "name": "Read",
            "activity": "behavioural_event",
            "event_name": "read",
            "kpi": "count",
            "value": "1",
        },
    ],
)
MONTHLY_3_DAYS = milestone(
    "monthly-3-days",
    "monthly",
    2,
    [
        {
            "target_id": "days",
            "name": "Both on 3 days",
            "activity": "milestone_achieved",
            "kpi": "count",
            "source_milestone_id": "daily-both",
            "value": "3",
        },
    ],
)


def test_unified_daily_group_counted_by_a_monthly_milestone(worker):
    settings = worker.settings
    produce(settings, [("definitions", "daily-both", DAILY_BOTH)])
    worker.wait_for_definition("daily-both")
    produce(settings, [("definitions", "monthly-3-days", MONTHLY_3_DAYS)])
    worker.wait_for_definition("monthly-3-days")
    events = []
    # Three days inside one monthly cycle with both activities; one day with only a walk. The days
    # are past, so the events say they were recorded then (a backfill), or they would be late.
    days = [START + timedelta(days=d, hours=9) for d in (1, 2, 3, 4)]
    for n, day in enumerate(days):
        names = ["walk"] if n == 1 else ["walk", "read"]
        for name in names:
            events.append(
                (
                    "behavioural-events",
                    "ana",
                    {
                        "type": "behavioural_event",
                        "event_id": f"{name}-{n}",
                        "customer_id": "ana",
                        "event_time": day.isoformat(),
                        "recorded_at": day.isoformat(),
                        "name": name,
                    },
                )
            )
    produce(settings, events)
    seen = consume(settings, "promotions", lambda s: any(e["milestone_id"] == "monthly-3-days" for e in s))
    group_days = sorted(
        e["cycle"]["index"]
        for e in seen
        if e["milestone_id"] == "daily-both" and e["target_id"] == "group" and e["kind"] == "achievement"
    )  # not the past days' closes
    assert group_days == [2, 4, 5]  # start + 1, 3 and 4 days (1-based cycles); the walk-only day is not achieved
    (monthly,) = [e for e in seen if e["milestone_id"] == "monthly-3-days"]
    assert (monthly["kind"], monthly["achieved_value"], monthly["defined_value"]) == ("achievement", "3", "3")
    assert monthly["occurred_at"].startswith(days[3].strftime("%Y-%m-%d"))
