"""Enrolment by performance through the real broker and a worker: the petrol chain 1 -> 2 -> 3."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.worker import consume, produce

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()
FORTNIGHT = {
    "kind": "custom",
    "periods": [
        {
            "name": "Fuel fortnight",
            "start": (TODAY - timedelta(days=7)).isoformat(),
            "end": (TODAY + timedelta(days=7)).isoformat(),
        }
    ],
}


def petrol(milestone_id: str, litres: str, after: str | None) -> dict:
    enrolment = {"method": "performance", "performance": {"milestone_id": after}} if after else {"method": "all"}
    return {
        "type": "milestone_definition",
        "milestone_id": milestone_id,
        "name": f"Buy {litres} L of petrol",
        "starts_at": (NOW - timedelta(days=30)).isoformat(),
        "ends_at": (NOW + timedelta(days=30)).isoformat(),
        "timezone": "UTC",
        "cycles": FORTNIGHT,
        "enrolment": enrolment,
        "group": {
            "targets": [
                {
                    "target_id": "litres",
                    "name": f"{litres} L",
                    "activity": "transaction",
                    "level": "line_item",
                    "kpi": "quantity",
                    "value": litres,
                    "filter": {"field": "line_item.category", "op": "eq", "value": "petrol"},
                }
            ]
        },
    }


CHAIN = [petrol("fuel-100", "100", None), petrol("fuel-200", "200", "fuel-100"), petrol("fuel-300", "300", "fuel-200")]


def fill(customer: str, n: int, days_ago: float, litres: str) -> tuple[str, str, dict]:
    return (
        "transactions",
        customer,
        {
            "type": "transaction",
            "event_id": f"{customer}-{n}",
            "customer_id": customer,
            "event_time": (NOW - timedelta(days=days_ago)).isoformat(),
            "bill_id": f"{customer}-{n}",
            "gross_amount": "1",
            "line_items": [
                {"line_id": "1", "sku": "FUEL-95", "category": "petrol", "quantity": litres, "gross_amount": "1"}
            ],
        },
    )


def test_achieving_each_target_enrols_into_the_next_up_to_the_third(worker):
    settings = worker.settings
    produce(settings, [("definitions", d["milestone_id"], d) for d in CHAIN])
    for d in CHAIN:
        worker.wait_for_definition(d["milestone_id"])
    produce(
        settings,
        [
            fill("ana", 1, 5, "60"),
            fill("ana", 2, 4, "50"),
            fill("ana", 3, 3, "100"),
            fill("ana", 4, 2, "90"),
            fill("raj", 1, 1, "300"),
        ],
    )

    def achievements(seen: list[dict]) -> list[tuple[str, str, str]]:
        return sorted(
            (e["customer_id"], e["milestone_id"], e["achieved_value"])
            for e in seen
            if e["kind"] == "achievement" and e["milestone_id"].startswith("fuel-")
        )

    events = consume(settings, "promotions", lambda seen: len(achievements(seen)) >= 6)
    assert achievements(events) == [
        ("ana", "fuel-100", "110"),  # 60 + 50 L: achieved, and so enrolled into the 200 L target
        ("ana", "fuel-200", "210"),  # the litres before the enrolment count (mid-cycle enrolment)
        ("ana", "fuel-300", "300"),
        ("raj", "fuel-100", "300"),  # one fill-up of 300 L runs the whole chain in one event
        ("raj", "fuel-200", "300"),
        ("raj", "fuel-300", "300"),
    ]
    when = {
        (e["customer_id"], e["milestone_id"]): datetime.fromisoformat(e["occurred_at"])
        for e in events
        if e["kind"] == "achievement"
    }
    assert when[("ana", "fuel-200")] == datetime.fromisoformat(fill("ana", 3, 3, "100")[2]["event_time"])
    assert when[("raj", "fuel-100")] == when[("raj", "fuel-300")]
