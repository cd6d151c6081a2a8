"""Late data through the real broker: the worker judges lateness on the Kafka record timestamp.

Events here carry no ``recorded_at``, so the worker falls back to the time Kafka gives the record
(the time it was produced, i.e. now). A cycle that closed two months ago must not award anything;
buffer days decide whether an event for a cycle that ended two days ago still counts. The
in-process driver builds its records itself, so only this path shows how the worker reads the
timestamp from the broker.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.factories import monthly_gross_definition, transaction
from tests.support.worker import consume, consume_quietly, produce, topic

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), timezone.utc)


def one_period_milestone(milestone_id: str, first: date, last: date, **overrides: Any) -> dict:
    """A UTC milestone with one custom cycle from ``first`` to ``last`` (inclusive), target 5,000."""
    return monthly_gross_definition(
        milestone_id,
        timezone="UTC",
        starts_at=midnight(first - timedelta(days=10)).isoformat(),
        ends_at=(NOW + timedelta(days=30)).isoformat(),
        cycles={"kind": "custom", "periods": [{"start": first.isoformat(), "end": last.isoformat()}]},
        **overrides,
    )


def for_milestone(records: list[dict], milestone_id: str) -> list[dict]:
    return [r for r in records if r.get("milestone_id") == milestone_id]


def test_an_event_for_a_cycle_closed_two_months_ago_goes_to_late_events_not_to_an_award(worker):
    settings = worker.settings
    first, last = TODAY - timedelta(days=75), TODAY - timedelta(days=60)
    produce(settings, [("definitions", "m-late", one_period_milestone("m-late", first, last))])
    worker.wait_for_definition("m-late")
    event_time = midnight(first + timedelta(days=3)).isoformat()
    produce(settings, [("transactions", "late-alice", transaction("late-alice", "6000", event_time, 1))])

    late = consume(settings, "late-events", lambda seen: bool(for_milestone(seen, "m-late")), timeout=30)
    (record,) = for_milestone(late, "m-late")
    assert (record["type"], record["customer_id"], record["cycle_index"]) == ("late_event", "late-alice", 1)
    assert record["cycle_end"] == midnight(last + timedelta(days=1)).isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )
    recorded = datetime.fromisoformat(record["recorded_at"])
    assert abs(recorded - datetime.now(timezone.utc)) < timedelta(minutes=5), "recorded when it was produced"
    promotions = consume_quietly(settings, "promotions", quiet=3)
    assert for_milestone(promotions, "m-late") == [], "a late event must not award"


def test_buffer_days_decide_whether_an_event_after_the_cycle_end_counts(worker):
    settings = worker.settings
    # The cycle ended at midnight two days ago: within a 5-day buffer, past a 1-day one.
    first, last = TODAY - timedelta(days=12), TODAY - timedelta(days=3)
    produce(
        settings,
        [
            ("definitions", "m-buffer-5", one_period_milestone("m-buffer-5", first, last, settings={"buffer_days": 5})),
            ("definitions", "m-buffer-1", one_period_milestone("m-buffer-1", first, last, settings={"buffer_days": 1})),
        ],
    )
    worker.wait_for_definition("m-buffer-5")
    worker.wait_for_definition("m-buffer-1")
    event_time = midnight(last).isoformat()
    produce(settings, [("transactions", "buffer-bob", transaction("buffer-bob", "5500", event_time, 1))])

    promotions = consume(settings, "promotions", lambda seen: bool(for_milestone(seen, "m-buffer-5")), timeout=30)
    (award,) = for_milestone(promotions, "m-buffer-5")
    assert (award["kind"], award["customer_id"], award["achieved_value"]) == ("achievement", "buffer-bob", "5500")
    late = consume(settings, "late-events", lambda seen: bool(for_milestone(seen, "m-buffer-1")), timeout=30)
    (record,) = for_milestone(late, "m-buffer-1")
    assert (record["customer_id"], record["cycle_index"]) == ("buffer-bob", 1)
    assert for_milestone(consume_quietly(settings, "promotions", quiet=3), "m-buffer-1") == []


def test_a_producer_timestamp_in_the_cycle_makes_a_backfilled_event_count(worker):
    """A producer may set the record's CreateTime to when the event was recorded upstream."""
    settings = worker.settings
    first, last = TODAY - timedelta(days=75), TODAY - timedelta(days=60)
    produce(settings, [("definitions", "m-backfill", one_period_milestone("m-backfill", first, last))])
    worker.wait_for_definition("m-backfill")
    event_time = midnight(first + timedelta(days=3))
    value = orjson.dumps(transaction("backfill-carol", "5000", event_time.isoformat(), 1))

    async def send_with_timestamp() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            recorded_ms = int((event_time + timedelta(hours=1)).timestamp() * 1000)
            await producer.send_and_wait(
                topic(settings, "transactions"), value, key=b"backfill-carol", timestamp_ms=recorded_ms
            )
        finally:
            await producer.stop()

    asyncio.run(send_with_timestamp())
    promotions = consume(settings, "promotions", lambda seen: bool(for_milestone(seen, "m-backfill")), timeout=30)
    assert [(e["kind"], e["customer_id"]) for e in for_milestone(promotions, "m-backfill")][:1] == [
        ("achievement", "backfill-carol")
    ]


def test_a_return_of_an_unknown_bill_goes_to_late_events_as_unmatched(worker):
    settings = worker.settings
    produce(
        settings,
        [
            (
                "definitions",
                "m-returns",
                one_period_milestone(
                    "m-returns",
                    TODAY - timedelta(days=5),
                    TODAY + timedelta(days=5),
                    settings={"adjust_on_bill_return": True},
                ),
            )
        ],
    )
    worker.wait_for_definition("m-returns")
    returned = {
        "type": "return",
        "event_id": "ret-dave-1",
        "customer_id": "return-dave",
        "event_time": NOW.isoformat(),
        "return_id": "ret-1",
        "bill_id": "bill-never-seen",
        "scope": "bill",
        "amount": "100",
    }
    produce(settings, [("returns", "return-dave", returned)])
    late = consume(
        settings, "late-events", lambda seen: any(r["customer_id"] == "return-dave" for r in seen), timeout=30
    )
    (record,) = [r for r in late if r["customer_id"] == "return-dave"]
    assert (record["type"], record["reason"], record["bill_id"], record["return_id"]) == (
        "unmatched_return",
        "bill_unknown",
        "bill-never-seen",
        "ret-1",
    )


def test_a_dead_letter_says_when_it_failed(worker):
    settings = worker.settings
    produce(settings, [("transactions", "dl-erin", b'{"type": "transaction", "event_id": ')])

    def erins(letters: list[dict]) -> list[dict]:
        return [letter for letter in letters if base64.b64decode(letter["key_b64"] or "") == b"dl-erin"]

    (letter,) = erins(consume(settings, "dead-letters", lambda seen: bool(erins(seen)), timeout=30))
    assert letter["reason"] == "malformed_json"
    failed_at = datetime.fromisoformat(letter["failed_at"])
    assert abs(failed_at - datetime.now(timezone.utc)) < timedelta(minutes=5), letter["failed_at"]


def test_dates_at_the_edge_and_hidden_characters_in_ids_are_schema_violations_on_the_worker(worker):
    """Year 9999 passed validation and overflowed behind it (a processing_error); a NUL reached the store."""
    settings = worker.settings
    produce(
        settings,
        [
            ("transactions", "edge-frank", transaction("edge-frank", "10", "9999-12-31T23:59:59Z", 1)),
            (
                "transactions",
                "edge-frank",
                transaction("edge-frank", "10", NOW.isoformat(), 2, recorded_at="0001-01-01T00:00:00+05:00"),
            ),
            ("transactions", "edge-frank\x00outbox", transaction("edge-frank\x00outbox", "10", NOW.isoformat(), 3)),
        ],
    )

    def franks(letters: list[dict]) -> list[dict]:
        return [letter for letter in letters if base64.b64decode(letter["key_b64"] or "").startswith(b"edge-frank")]

    letters = franks(consume(settings, "dead-letters", lambda seen: len(franks(seen)) >= 3, timeout=30))
    assert [letter["reason"] for letter in letters] == ["schema_violation"] * 3, letters
    details = " | ".join(letter["detail"] for letter in letters)  # the NUL key may land on another partition
    assert "event_time: must be from 1970-01-01" in details
    assert "recorded_at: must be from 1970-01-01" in details
    assert "customer_id: contains U+0000 (control character)" in details
    assert worker.process.poll() is None
