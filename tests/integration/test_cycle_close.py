"""Scheduled cycle close through the real broker: 5,000 enrolled customers, a worker killed mid-close.

The milestone's only cycle ended yesterday; its "specific customers" list enrols 5,000 customers and
a purchase for every tenth of them (recorded in time) arrives now, as in a backfill: the cycle is due at once, so the
worker's close ticks close it for every customer. The worker is SIGKILLed after the first closes
are out and restarted on the same data; every customer must end with exactly one distinct
cycle-close event, and any re-sent copy must be byte-identical. The milestone awards at the end of
the cycle, so the buyers' sub-target events come with their closes.
"""

import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.factories import monthly_gross_definition, transaction
from tests.support.worker import WorkerProcess, consume, create_topics, isolated_settings, produce

pytestmark = pytest.mark.kafka

CUSTOMERS = int(os.environ.get("CLOSE_TEST_CUSTOMERS", "5000"))  # fewer for a quick local run


def test_a_cycle_closes_once_for_each_of_5000_customers_across_a_restart(kafka_bootstrap, tmp_path):
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "data", close_tick_interval_s=6.0, close_batch_size=50, session_timeout_s=6.0
    )
    create_topics(settings)
    today = datetime.now(timezone.utc).date()
    definition = monthly_gross_definition(
        "m-close",
        target="1000",
        timezone="UTC",
        starts_at=(datetime.now(timezone.utc) - timedelta(days=10)).isoformat(),
        ends_at=(datetime.now(timezone.utc) + timedelta(days=10)).isoformat(),
        cycles={
            "kind": "custom",
            "periods": [
                {"start": (today - timedelta(days=5)).isoformat(), "end": (today - timedelta(days=1)).isoformat()}
            ],
        },
        # The listed customers are enrolled without any event of their own.
        enrolment={"method": "specific", "customers": [f"cust-{n:05d}" for n in range(CUSTOMERS)]},
        # End-of-cycle award mode: sub-targets reached take effect at the close, with it.
        settings={"award_when_target_achieved": False},
    )
    definition["group"]["targets"][0]["sub_targets"] = [{"name": "Started", "criterion": "absolute", "value": "300"}]
    in_cycle = datetime.combine(today - timedelta(days=2), datetime.min.time(), timezone.utc).isoformat()
    records = [("definitions", "m-close", definition)]
    for n in range(CUSTOMERS):
        customer = f"cust-{n:05d}"
        if n % 10 == 0:
            records.append(("transactions", customer, transaction(customer, "400", in_cycle, n, recorded_at=in_cycle)))
    produce(settings, records)

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        before = consume(settings, "promotions", lambda seen: len(seen) >= 500, timeout=120)
        worker.kill()
        assert 500 <= len(before) < CUSTOMERS, "the kill must land in the middle of the close"
        time.sleep(1)
        worker.start()
        expected = CUSTOMERS + CUSTOMERS // 10  # a close each, and the buyers' deferred sub-target events
        events = consume(
            settings, "promotions", lambda seen: len({e["event_id"] for e in seen}) >= expected, timeout=240
        )
        time.sleep(3)  # let any stray extra event arrive before judging
        events = consume(settings, "promotions", lambda seen: len(seen) >= len(events), timeout=30)
    finally:
        log = worker.log_tail()
        worker.stop()

    distinct = {e["event_id"]: e for e in events}
    per_customer = {}
    for event in distinct.values():
        if event["kind"] == "cycle_close":
            per_customer.setdefault(event["customer_id"], []).append(event)
    deferred = [e for e in distinct.values() if e["kind"] != "cycle_close"]
    missing = sorted(set(f"cust-{n:05d}" for n in range(0, CUSTOMERS, 10)) - {e["customer_id"] for e in deferred})
    assert not missing, (
        len(events),
        len(distinct),
        len(per_customer),
        missing[:5],
        [per_customer.get(c) for c in missing[:2]],
        log,
    )
    assert sorted(e["customer_id"] for e in deferred) == sorted(f"cust-{n:05d}" for n in range(0, CUSTOMERS, 10))
    assert {(e["kind"], e["milestone_value_defined"], e["cause"]) for e in deferred} == {
        ("sub_target", "300", "cycle-end")
    }
    assert len(per_customer) == CUSTOMERS, f"{CUSTOMERS - len(per_customer)} customers got no close\n{log}"
    assert all(len(closes) == 1 for closes in per_customer.values())
    for event in events:  # re-sent after the crash: the very same event
        assert event == distinct[event["event_id"]]
    buyers = {c: e[0] for c, e in per_customer.items() if int(c.split("-")[1]) % 10 == 0}
    assert {(e["achieved_value"], e["defined_value"], e["achieved"]) for e in buyers.values()} == {
        ("400", "1000", False)
    }
    quiet = [e[0] for c, e in per_customer.items() if c not in buyers]
    assert {(e["achieved_value"], e["gap"]) for e in quiet} == {("0", "1000")}
