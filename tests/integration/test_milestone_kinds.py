"""Several kinds of milestone at once, through the real broker and a worker."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.worker import consume, produce

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()


def base(milestone_id: str, name: str, cycles: dict, target: dict) -> dict:
    return {
        "type": "milestone_definition",
        "milestone_id": milestone_id,
        "name": name,
        "starts_at": (NOW - timedelta(days=30)).isoformat(),
        "ends_at": (NOW + timedelta(days=30)).isoformat(),
        "timezone": "UTC",
        "cycles": cycles,
        "group": {"targets": [target]},
    }


ONE_PERIOD = {
    "kind": "custom",
    "periods": [
        {
            "name": "Launch fortnight",
            "start": (TODAY - timedelta(days=7)).isoformat(),
            "end": (TODAY + timedelta(days=7)).isoformat(),
        }
    ],
}

KINDS = [
    base(
        "steps",
        "Walk 3 days",
        ONE_PERIOD,
        {
            "target_id": "walk",
            "name": "Walked 3 days",
            "activity": "behavioural_event",
            "event_name": "walk",
            "kpi": "days_of_activity",
            "value": "3",
            "filter": {"field": "event.attributes.steps", "op": "gte", "value": 5000},
        },
    ),
    base(
        "points",
        "Earn 500 points",
        ONE_PERIOD,
        {
            "target_id": "earn",
            "name": "Earned 500 points",
            "activity": "currency_earned",
            "kpi": "currency_earned",
            "currency": "points",
            "currency_kind": "regular",
            "value": "500",
        },
    ),
    base(
        "petrol",
        "Buy 5 litres premium",
        {"kind": "till_achieved", "max_cycles": 2},
        {
            "target_id": "litres",
            "name": "5 litres premium",
            "activity": "transaction",
            "level": "line_item",
            "kpi": "quantity",
            "value": "5",
            "filter": {"field": "line_item.sku", "op": "eq", "value": "PREMIUM-95"},
        },
    ),
]


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def test_behavioural_days_points_and_line_item_quantity_milestones_together(worker):
    settings = worker.settings
    produce(settings, [("definitions", d["milestone_id"], d) for d in KINDS])
    for d in KINDS:
        worker.wait_for_definition(d["milestone_id"])
    walks = [
        {
            "type": "behavioural_event",
            "event_id": f"w{i}",
            "customer_id": "kim",
            "event_time": at(days),
            "name": "walk",
            "attributes": {"steps": steps},
        }
        for i, (days, steps) in enumerate([(4, 6000), (4, 7000), (3, 1000), (2, 5200), (1, 5100)])
    ]
    ledger = [
        {
            "type": "ledger_entry",
            "event_id": f"l{i}",
            "customer_id": "kim",
            "event_time": at(1),
            "entry_id": f"l{i}",
            "currency": "points",
            "kind": kind,
            "amount": amount,
        }
        for i, (kind, amount) in enumerate(
            [("regular", "300"), ("promotional", "900"), ("regular", "-50"), ("regular", "250")]
        )
    ]
    fuel = [
        {
            "type": "transaction",
            "event_id": f"f{i}",
            "customer_id": "kim",
            "event_time": at(days),
            "bill_id": f"f{i}",
            "gross_amount": "100",
            "line_items": [
                {"line_id": "1", "sku": sku, "quantity": qty, "gross_amount": "50"},
                {"line_id": "2", "sku": "SNACK", "quantity": "9", "gross_amount": "50"},
            ],
        }
        for i, (days, sku, qty) in enumerate(
            [(2, "PREMIUM-95", "3"), (1.5, "REGULAR-91", "10"), (1, "PREMIUM-95", "2.5"), (0.5, "PREMIUM-95", "5")]
        )
    ]
    produce(
        settings,
        [("behavioural-events", "kim", e) for e in walks]
        + [("ledger", "kim", e) for e in ledger]
        + [("transactions", "kim", e) for e in fuel],
    )
    wanted = {"steps", "points", "petrol"}
    events = consume(
        settings,
        "promotions",
        lambda seen: sum(1 for e in seen if e["milestone_id"] in wanted and e["customer_id"] == "kim") >= 6,
    )
    mine = [e for e in events if e["milestone_id"] in wanted and e["customer_id"] == "kim"]
    summary = sorted((e["milestone_id"], e["kind"], e["cycle"]["index"], e["achieved_value"]) for e in mine)
    assert summary == [
        ("petrol", "achievement", 1, "5.5"),  # 3 + 2.5 litres of premium; regular petrol and snacks do not count
        ("petrol", "achievement", 2, "5"),  # the next cycle starts at once; 5 litres reach it again
        ("petrol", "cycle_close", 1, "5.5"),  # a till-achieved cycle ends when it is achieved
        ("petrol", "cycle_close", 2, "5"),
        ("points", "achievement", 1, "550"),  # regular points only: 300 + 250 (debits and promotional excluded)
        ("steps", "achievement", 1, "3"),  # three distinct days with 5,000+ steps
    ]
    assert all(e["cycle"]["name"] == "Launch fortnight" for e in mine if e["milestone_id"] != "petrol")
