"""Through the real broker and a real worker: a percentage sub-target on a count, a clone with a
changed KPI, and the simulator emitting what the worker emits for the same input."""

from __future__ import annotations

import io
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from milestream.simulate import run
from tests.factories import monthly_gross_definition, transaction
from tests.support.worker import consume, consume_quietly, produce

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc).replace(microsecond=0)
FIRST = NOW.replace(day=1, hour=0, minute=0, second=0)  # this month's cycle is open now
START = (FIRST - timedelta(days=40)).replace(day=1)  # the month before last: last month's cycle has closed
NOW_TEXT = NOW.isoformat()


def this_month(milestone_id: str, **overrides: Any) -> dict:
    """A UTC milestone with monthly cycles from the start of this month, live now."""
    return monthly_gross_definition(
        milestone_id,
        timezone="UTC",
        starts_at=START.isoformat(),
        ends_at=(FIRST + timedelta(days=95)).isoformat(),
        cycles={"kind": "calendar", "frequency": "monthly", "start_date": START.date().isoformat(), "count": 6},
        **overrides,
    )


def of(records: list[dict], milestone_id: str, kind: str | None = None) -> list[dict]:
    return [r for r in records if r.get("milestone_id") == milestone_id and kind in (None, r.get("kind"))]


def test_a_percentage_sub_target_on_a_count_fires_at_the_rounded_up_count(worker):
    settings = worker.settings
    count_target = {
        "target_id": "visits",
        "name": "Ten bills",
        "activity": "transaction",
        "level": "bill",
        "kpi": "count",
        "value": "10",
        "sub_targets": [{"name": "Three quarters", "criterion": "percentage", "value": "75"}],
    }
    produce(settings, [("definitions", "m-count", this_month("m-count", group={"targets": [count_target]}))])
    worker.wait_for_definition("m-count")
    produce(settings, [("transactions", "pc-1", transaction("pc-1", "10", NOW_TEXT, n)) for n in range(9)])
    promotions = consume(settings, "promotions", lambda seen: bool(of(seen, "m-count")), timeout=60)
    promotions = consume_quietly(settings, "promotions", quiet=3)
    (event,) = of(promotions, "m-count")
    assert event["kind"] == "sub_target"
    assert (event["milestone_value_defined"], event["achieved_value"], event["trigger_names"]) == (
        "8",
        "8",
        ["Three quarters"],
    )  # fired by the 8th bill: 75 % of 10 rounded up


def test_a_clone_with_a_changed_kpi_is_applied_and_counts_its_own_kpi(worker):
    settings = worker.settings
    produce(settings, [("definitions", "m-gross", this_month("m-gross"))])
    worker.wait_for_definition("m-gross")
    net_target = {
        "target_id": "spend",
        "name": "Net 5000",
        "activity": "transaction",
        "level": "bill",
        "kpi": "net_amount",
        "value": "5000",
    }
    clone = {
        "type": "milestone_clone",
        "milestone_id": "m-net",
        "source_milestone_id": "m-gross",
        "name": "Net spend",
        "enrolment": {"method": "all"},
        "changes": {"group": {"targets": [net_target]}},
    }
    produce(settings, [("definitions", "m-net", clone)])
    worker.wait_for_definition("m-net")
    produce(
        settings,
        [
            ("transactions", "cl-a", transaction("cl-a", "6000", NOW_TEXT, 1, net_amount="5200")),
            ("transactions", "cl-b", transaction("cl-b", "6000", NOW_TEXT, 2, net_amount="4500")),
        ],
    )
    consume(settings, "promotions", lambda seen: len(of(seen, "m-gross")) + len(of(seen, "m-net")) >= 3, timeout=60)
    promotions = consume_quietly(settings, "promotions", quiet=3)
    assert sorted(e["customer_id"] for e in of(promotions, "m-gross", "achievement")) == ["cl-a", "cl-b"]
    assert [e["customer_id"] for e in of(promotions, "m-net", "achievement")] == ["cl-a"]


def _essence(record: dict) -> tuple:
    """What must agree between the worker and the simulator (topic names and offsets differ)."""
    kind = record["type"]
    if kind == "milestone_event":
        return kind, record["kind"], record["event_id"], record["achieved_value"], record["milestone_value_defined"]
    if kind == "late_event":
        return kind, record["event_id"], record["milestone_id"], record["cycle_index"]
    if kind == "unmatched_return":
        return kind, record["return_id"], record["reason"]
    if kind == "lifetime_points":
        return kind, record["customer_id"], record["points"]
    assert kind == "dead_letter", record
    return kind, record["reason"], record["value_sha256"]


def test_the_simulator_emits_what_the_worker_emits(worker):
    settings = worker.settings
    definition = this_month(
        "m-sim",
        settings={"adjust_on_bill_return": True},
        group={
            "targets": [
                {
                    "target_id": "spend",
                    "name": "Spend 5000",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": "5000",
                    "sub_targets": [{"name": "Half", "criterion": "percentage", "value": "50"}],
                }
            ]
        },
    )
    last_month = (FIRST - timedelta(days=3)).isoformat()
    stamped = {"recorded_at": NOW_TEXT}  # the same lateness judgement on both sides
    events: list[tuple[str, Any]] = [
        ("transactions", transaction("sim-a", "3000", NOW_TEXT, 1, **stamped)),
        ("transactions", transaction("sim-a", "2500", NOW_TEXT, 2, **stamped)),
        ("transactions", transaction("sim-a", "900", last_month, 3, **stamped)),  # its cycle closed: late
        (
            "returns",
            {
                "type": "return",
                "event_id": "sim-r1",
                "return_id": "sim-r1",
                "customer_id": "sim-a",
                "bill_id": "sim-unknown",
                "scope": "bill",
                "event_time": NOW_TEXT,
                **stamped,
            },
        ),
        (
            "ledger",
            {
                "type": "ledger_entry",
                "event_id": "sim-l1",
                "entry_id": "sim-l1",
                "customer_id": "sim-a",
                "event_time": NOW_TEXT,
                "amount": "120",
                "currency": "points",
                "kind": "regular",
                **stamped,
            },
        ),
        ("transactions", {"type": "transaction", "customer_id": "sim-a", "event_id": "sim-bad"}),  # a dead letter
    ]
    produce(settings, [("definitions", "m-sim", definition)])
    worker.wait_for_definition("m-sim")
    produce(settings, [(topic_name, "sim-a", body) for topic_name, body in events])

    out, err = io.BytesIO(), io.StringIO()
    lines = b"".join(orjson.dumps(body) + b"\n" for _, body in events)
    outcomes = run(orjson.dumps(definition).decode(), io.BytesIO(lines), out, err)
    simulated = [orjson.loads(line) for line in out.getvalue().splitlines()]
    expected = Counter(map(_essence, simulated))
    assert {kind for kind, *_ in expected} == {
        "milestone_event",
        "late_event",
        "unmatched_return",
        "lifetime_points",
        "dead_letter",
    }, err.getvalue()
    assert (outcomes["late_event"], outcomes["unmatched_return"], outcomes["dead_letter"]) == (1, 1, 1)

    def ours(record: dict) -> bool:
        if record["type"] == "dead_letter":
            return record["value_sha256"] in {e[2] for e in expected if e[0] == "dead_letter"}
        # The worker also has the other tests' milestones, which count sim-a's events too.
        return record.get("customer_id") == "sim-a" and record.get("milestone_id", "m-sim") == "m-sim"

    emitted: list[dict] = []
    for logical in ("promotions", "late-events", "lifetime-points", "dead-letters"):
        wanted = sum(
            n
            for e, n in expected.items()
            if {
                "milestone_event": "promotions",
                "late_event": "late-events",
                "unmatched_return": "late-events",
                "lifetime_points": "lifetime-points",
                "dead_letter": "dead-letters",
            }[e[0]]
            == logical
        )
        emitted += [
            r
            for r in consume(
                settings, logical, lambda seen, wanted=wanted: len([r for r in seen if ours(r)]) >= wanted, timeout=60
            )
            if ours(r)
        ]
    assert Counter(map(_essence, emitted)) == expected
