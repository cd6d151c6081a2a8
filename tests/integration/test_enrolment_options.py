"""Enrolment options through the real broker and a real worker: `milestream enrol` with an initial balance,
an enrolment into a later named cycle, a re-enrolment that resets, and an unknown cycle dead-lettered."""

from __future__ import annotations

import base64
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from tests.support.worker import consume, produce, settings_env, wait_for_commits

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()
MILESTONE = {
    "type": "milestone_definition",
    "milestone_id": "seasons",
    "name": "Spend 5000 a season",
    "starts_at": (NOW - timedelta(days=10)).isoformat(),
    "ends_at": (NOW + timedelta(days=40)).isoformat(),
    "timezone": "UTC",
    "cycles": {
        "kind": "custom",
        "periods": [
            {
                "name": "Now",
                "start": (TODAY - timedelta(days=7)).isoformat(),
                "end": (TODAY + timedelta(days=7)).isoformat(),
            },
            {
                "name": "Next",
                "start": (TODAY + timedelta(days=8)).isoformat(),
                "end": (TODAY + timedelta(days=30)).isoformat(),
            },
        ],
    },
    "enrolment": {"method": "specific", "customers": ["someone-else"]},
    "group": {
        "targets": [
            {
                "target_id": "spend",
                "name": "Season spend 5000",
                "activity": "transaction",
                "level": "bill",
                "kpi": "gross_amount",
                "value": "5000",
            }
        ]
    },
}


def at(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def txn(customer: str, n: int, gross: str, minutes_ago: int) -> tuple[str, str, dict]:
    return (
        "transactions",
        customer,
        {
            "type": "transaction",
            "event_id": f"{customer}-t{n}",
            "customer_id": customer,
            "event_time": at(minutes_ago),
            "bill_id": f"{customer}-b{n}",
            "gross_amount": gross,
        },
    )


def enrolment(customer: str, n: int, minutes_ago: int, **options) -> tuple[str, str, dict]:
    return (
        "enrolments",
        customer,
        {
            "type": "enrolment",
            "event_id": f"{customer}-e{n}",
            "customer_id": customer,
            "event_time": at(minutes_ago),
            "milestone_id": "seasons",
            **options,
        },
    )


def applied(settings, *records) -> None:
    """Produce records of one topic and wait until the worker has committed them (cross-topic order)."""
    produce(settings, list(records))
    wait_for_commits(settings, records[0][0])


def test_initial_balance_named_cycle_reset_and_a_bad_cycle(worker, tmp_path):
    settings = worker.settings
    produce(settings, [("definitions", "seasons", MILESTONE)])
    worker.wait_for_definition("seasons")

    # ann: enrolled by `milestream enrol` with 3,000 to start with; a 2,000 purchase reaches 5,000.
    audience = tmp_path / "audience.csv"
    audience.write_text("customer_id,+spend\nann,3000\n")
    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "milestream.cli",
            "enrol",
            "--milestone",
            "seasons",
            "--csv",
            str(audience),
            "--at",
            at(60),
        ],
        env=settings_env(settings),
        capture_output=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    # bob: enrolled into the "Next" season, so a purchase now counts for nothing.
    # dan: 3,000, unenrolled, re-enrolled with a reset. cho: a season that does not exist.
    applied(
        settings,
        enrolment("bob", 1, 60, cycle="Next"),
        enrolment("dan", 1, 60),
        enrolment("cho", 1, 60, cycle="Winter"),
    )
    applied(settings, txn("ann", 1, "2000", 50), txn("bob", 1, "6000", 50), txn("dan", 1, "3000", 50))
    applied(settings, enrolment("dan", 2, 40, action="unenrol"))
    applied(settings, enrolment("dan", 3, 30, reenrol="reset"))
    applied(settings, txn("dan", 2, "2000", 20))
    produce(settings, [txn("dan", 3, "3000", 10)])

    def everyone_seen(seen: list[dict]) -> bool:
        return sum(1 for e in seen if e["milestone_id"] == "seasons") >= 2

    events = [e for e in consume(settings, "promotions", everyone_seen) if e["milestone_id"] == "seasons"]
    wait_for_commits(settings, "transactions")
    summary = sorted((e["customer_id"], e["kind"], e["cycle"]["name"], e["achieved_value"]) for e in events)
    assert summary == [("ann", "achievement", "Now", "5000"), ("dan", "achievement", "Now", "5000")]
    dan = next(e for e in events if e["customer_id"] == "dan")
    reached = datetime.fromisoformat(dan["occurred_at"].replace("Z", "+00:00"))
    assert abs(reached - (NOW - timedelta(minutes=10))) < timedelta(seconds=1)  # reset: at the third purchase
    ann = next(e for e in events if e["customer_id"] == "ann")
    assert ann["targets"][0]["initial_balance"] == "3000"
    letters = consume(
        settings, "dead-letters", lambda seen: any(d["reason"] == "invalid_enrolment" for d in seen), timeout=20
    )
    (letter,) = [d for d in letters if d["reason"] == "invalid_enrolment"]
    assert "has no cycle 'Winter'" in letter["detail"]
    assert orjson.loads(base64.b64decode(letter["value_b64"]))["customer_id"] == "cho"
