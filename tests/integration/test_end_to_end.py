"""Through the real broker: transactions in, an achievement event out; bad input dead-lettered."""

import base64
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from milestream.engine.ids import milestone_event_id
from milestream.schemas.outputs import MilestoneEvent
from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.worker import consume, consume_quietly, produce

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
THIS_YEAR = live_window(NOW)


def when(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def test_transactions_through_the_broker_yield_one_achievement(worker):
    settings = worker.settings
    produce(settings, [("definitions", "m-e2e", monthly_gross_definition("m-e2e", **THIS_YEAR))])
    worker.wait_for_definition("m-e2e")
    produce(
        settings,
        [
            ("transactions", "alice", transaction("alice", "2000", when(30), 1)),
            ("transactions", "bob", transaction("bob", "100", when(30), 1)),
            ("transactions", "alice", transaction("alice", "1500", when(20), 2)),
            ("transactions", "alice", transaction("alice", "3000.50", when(10), 3)),
            ("transactions", "alice", transaction("alice", "10", when(5), 4)),
        ],
    )
    events = consume_quietly(settings, "promotions")
    assert len(events) == 1, events
    event = MilestoneEvent.model_validate(events[0])
    assert event.kind == "achievement" and event.customer_id == "alice"
    assert str(event.achieved_value) == "6500.50"
    assert str(event.defined_value) == "5000"
    assert event.is_target_achieved_event
    assert event.event_id == milestone_event_id("m-e2e", "spend", "alice", event.cycle.index, "achievement")
    metrics = worker.http("/metrics")
    assert 'milestream_outputs_emitted_total{kind="achievement"}' in metrics
    # Start-up's objects were frozen out of later collections once the definitions were loaded.
    (frozen,) = [line for line in metrics.splitlines() if line.startswith("milestream_gc_frozen_objects ")]
    assert float(frozen.split()[1]) > 10_000
    # Each request's time, by the route's pattern (the test polled /definitions above).
    assert 'milestream_http_request_seconds_count{method="GET",route="/definitions",status="200"}' in metrics


def test_bad_input_is_dead_lettered_and_good_input_still_flows(worker):
    settings = worker.settings
    produce(settings, [("definitions", "m-dlq", monthly_gross_definition("m-dlq", **THIS_YEAR, name="DLQ test"))])
    worker.wait_for_definition("m-dlq")
    bad = [
        b'{"type": "transaction", "event_id": ',
        orjson.dumps({**transaction("carol", "10", when(5), 9), "type": "mystery"}),
        orjson.dumps(transaction("carol", "-10", when(5), 8)),
        orjson.dumps({**transaction("carol", "10", when(5), 7), "pad": "x" * 300_000}),
    ]
    produce(
        settings,
        [
            ("transactions", "carol", transaction("carol", "4000", when(9), 1)),
            *[("transactions", "carol", value) for value in bad],
            ("transactions", "mallory", transaction("carol", "10", when(5), 6)),  # key is not the customer
            ("transactions", "carol", transaction("carol", "1000", when(4), 2)),
        ],
    )
    letters = consume(settings, "dead-letters", lambda seen: len(seen) >= 5)
    assert sorted(letter["reason"] for letter in letters) == sorted(
        ["malformed_json", "unknown_event_type", "schema_violation", "oversize_payload", "wrong_key"]
    )
    by_reason = {letter["reason"]: letter for letter in letters}
    assert base64.b64decode(by_reason["malformed_json"]["value_b64"]) == bad[0]
    assert by_reason["wrong_key"]["source_topic"] == settings.topic_prefix + "transactions"
    events = consume(settings, "promotions", lambda seen: any(e["milestone_id"] == "m-dlq" for e in seen))
    carol = [e for e in events if e["milestone_id"] == "m-dlq"]
    assert [(e["customer_id"], e["kind"], e["achieved_value"]) for e in carol] == [("carol", "achievement", "5000")]
    assert worker.process.poll() is None, "the worker must survive bad input"
    metrics = worker.http("/metrics")
    assert 'milestream_dead_letters_total{reason="malformed_json"} 1.0' in metrics


def test_invalid_definition_is_dead_lettered_once(worker):
    settings = worker.settings
    broken = monthly_gross_definition("m-broken", **THIS_YEAR)
    broken["group"]["targets"][0]["kpi"] = "quantity"  # not available at bill level
    produce(settings, [("definitions", "m-broken", broken)])
    letters = consume(
        settings, "dead-letters", lambda seen: any(letter["reason"] == "invalid_definition" for letter in seen)
    )
    (letter,) = [letter for letter in letters if letter["reason"] == "invalid_definition"]
    assert "quantity" in letter["detail"]
    assert "m-broken" not in worker.http("/definitions", expect_json=True)
