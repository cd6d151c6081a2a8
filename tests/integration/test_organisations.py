"""Through the real broker and a real worker: two organisations, the same customer id, never mixed."""

from datetime import datetime, timedelta, timezone

import pytest

from milestream.engine.ids import milestone_event_id
from tests.factories import monthly_gross_definition, transaction
from tests.support.worker import consume, produce

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
THIS_YEAR = {
    "starts_at": (NOW - timedelta(days=40)).isoformat(),
    "ends_at": (NOW + timedelta(days=40)).isoformat(),
    "timezone": "UTC",
    "cycles": {
        "kind": "calendar",
        "frequency": "monthly",
        "start_date": (NOW - timedelta(days=40)).date().isoformat(),
        "count": 3,
    },
}
BRAND = "brand-b"


def when(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def test_the_same_customer_in_two_organisations_is_two_customers(worker):
    settings = worker.settings
    produce(
        settings,
        [
            ("definitions", "org-home", monthly_gross_definition("org-home", **THIS_YEAR)),
            ("definitions", "org-brand", monthly_gross_definition("org-brand", **THIS_YEAR, org_id=BRAND)),
        ],
    )
    worker.wait_for_definition("org-home")
    worker.wait_for_definition("org-brand")
    # Keyed by customer id, as before organisations: 3000 in each organisation is 5000 in neither.
    produce(
        settings,
        [
            ("transactions", "zoe", transaction("zoe", "3000", when(30), 1)),
            ("transactions", "zoe", transaction("zoe", "3000", when(29), 1, org_id=BRAND)),
            (
                "ledger",
                "zoe",
                {
                    "type": "ledger_entry",
                    "event_id": "led-zoe-1",
                    "entry_id": "entry-1",
                    "customer_id": "zoe",
                    "org_id": BRAND,
                    "event_time": when(28),
                    "amount": "40",
                    "source": "referral",
                },
            ),
            ("transactions", "zoe", transaction("zoe", "2500", when(20), 2, org_id=BRAND)),
        ],
    )
    events = consume(settings, "promotions", lambda seen: any(e["milestone_id"] == "org-brand" for e in seen))
    ours = [e for e in events if e["milestone_id"] in ("org-home", "org-brand")]
    assert [(e["org_id"], e["milestone_id"], e["customer_id"], e["kind"], e["achieved_value"]) for e in ours] == [
        (BRAND, "org-brand", "zoe", "achievement", "5500")
    ]
    assert ours[0]["event_id"] == milestone_event_id(
        "org-brand", "spend", "zoe", ours[0]["cycle"]["index"], "achievement", BRAND
    )
    (lifetime,) = consume(settings, "lifetime-points", lambda seen: bool(seen))
    assert (lifetime["customer_id"], lifetime["org_id"], lifetime["points"]) == ("zoe", BRAND, "40")
    page = worker.http_until(f"/lifetime-points/zoe?org_id={BRAND}", lambda page: "points" in page)
    assert page["points"] == "40"
