"""Generated hostile input on every input topic, through the whole topology in-process.

Whatever a producer sends, the topology must either process it or dead-letter it with a
specific input reason: never raise, never call it a ``processing_error`` (that reason is for
failures of our own), never produce a dead letter too large for the broker, and never
disturb the valid records around it. The real-broker counterpart is
``tests/integration/test_hostile_input.py``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milestream.pipeline.driver import TopologyTestDriver
from milestream.pipeline.topology import PROCESSED
from tests.engine import builders as b
from tests.engine import series_builders as sb
from tests.factories import at, monthly_gross_definition, transaction

WHEN = "2024-01-05T10:00:00+05:30"
VICTIM = "c-neighbour"
FUZZED = "c-fuzz"

# Reasons that blame the input; a hostile record may get any of them, but no other.
INPUT_REASONS = {"malformed_json", "schema_violation", "unknown_event_type", "oversize_payload", "wrong_key"}
# A dead letter has to fit in one broker message (1 MB by default) with room to spare.
MAX_DEAD_LETTER_BYTES = 64 * 1024


def valid_records(customer: str) -> dict[str, dict[str, Any]]:
    """One valid record per customer-keyed input topic (fixed ids, so generation is repeatable)."""
    common = {"event_id": f"e-{customer}", "customer_id": customer, "event_time": WHEN}
    return {
        "transactions": {
            **b.txn(customer, WHEN, "10"),
            **common,
            "bill_id": "bill-1",
            "line_items": [{"line_id": "l-1", "sku": "sku-1", "gross_amount": "10"}],
        },
        "returns": {**b.bill_return(customer, WHEN), **common, "return_id": "r-1", "bill_id": "bill-0"},
        "behavioural-events": {**b.behavioural(customer, "app_open", WHEN, attributes={"screen": "home"}), **common},
        "ledger": {**b.ledger(customer, WHEN, "5"), **common, "entry_id": "entry-1"},
        "activities": {**b.customer_activity(customer, "referral", WHEN), **common},
        "enrolments": {**b.enrolment(customer, "m-monthly", WHEN), **common},
        "redemptions": {**sb.redemption(customer, "bronze", "reward-bronze", WHEN), **common},
    }


TOPICS = sorted(valid_records(FUZZED))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["", " ", "NaN", "Infinity", "-1", "1e400", "9" * 60, "\u202e", "\x00"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
hostile_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=("Cc", "Cf", "Zl", "Zp", "Zs", "Ll", "Nd")),
    min_size=1,
    max_size=20,
)


@st.composite
def mutated(draw: st.DrawFn, topic: str) -> tuple[bytes | None, bytes | None]:
    """(key, value) derived from a valid record of ``topic`` by one hostile change."""
    body = dict(valid_records(FUZZED)[topic])
    key: bytes | None = FUZZED.encode()
    field = draw(st.sampled_from(sorted(body)))
    how = draw(
        st.sampled_from(
            [
                "drop",
                "replace",
                "extra",
                "hostile_text",
                "timestamp",
                "key",
                "bytes",
                "nest",
                "pad",
                "non_object",
            ]
        )
    )
    if how == "drop":
        del body[field]
    elif how == "replace":
        body[field] = draw(json_values)
    elif how == "extra":
        body[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in body))] = draw(json_values)
    elif how == "hostile_text":
        text = body[field] if isinstance(body[field], str) else "x"
        cut = draw(st.integers(0, len(text)))
        body[field] = text[:cut] + draw(hostile_text) + text[cut:]
    elif how == "timestamp":
        body[draw(st.sampled_from(["event_time", "recorded_at"]))] = draw(
            st.one_of(
                st.integers(min_value=-(2**40), max_value=2**45),
                st.sampled_from(
                    [
                        "1704067200",
                        "1704067200000",
                        "0001-01-01T00:00:00+00:00",
                        "9999-12-31T23:59:59+00:00",
                        "2024-01-05T10:00:00",
                        "2024-13-45T10:00:00+05:30",
                        "yesterday",
                        "2024-01-05T10:00:00+25:00",
                    ]
                ),
            )
        )
    elif how == "key":
        key = draw(st.one_of(st.none(), st.binary(max_size=20), st.just(VICTIM.encode()), st.just(b"\xff\xfe")))
    elif how == "bytes":
        return key, draw(st.binary(max_size=200))
    elif how == "nest":
        depth = draw(st.integers(100, 200_000))
        return key, b"[" * depth + b"]" * depth
    elif how == "pad":
        body["pad"] = "x" * draw(st.integers(200_000, 900_000))
    elif how == "non_object":
        return key, orjson.dumps(draw(st.one_of(json_scalars, st.lists(json_scalars, max_size=3))))
    return key, orjson.dumps(body)


def loaded_driver() -> TopologyTestDriver:
    driver = TopologyTestDriver()
    assert driver.pipe("definitions", "m-monthly", monthly_gross_definition()).outcome == "applied"
    assert driver.pipe("definitions", "series:s1", sb.series()).outcome == "applied"
    return driver


def assert_bounded_dead_letter(driver: TopologyTestDriver, reason: str, value: bytes | None) -> None:
    ((raw_key, raw),) = driver.produced[driver.topic("dead-letters")]
    assert len(raw) <= MAX_DEAD_LETTER_BYTES, f"dead letter of {len(raw)} bytes"
    letter = orjson.loads(raw)
    assert letter["reason"] == reason
    assert letter["detail"]
    if value is not None:
        kept = base64.b64decode(letter["value_b64"])
        assert value.startswith(kept)
        assert letter["value_bytes"] == len(value)
        assert letter["value_sha256"] == hashlib.sha256(value).hexdigest()
        assert letter["truncated"] == (kept != value)


@pytest.mark.parametrize("topic", TOPICS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_record_is_processed_or_dead_lettered_and_neighbours_flow(topic, data):
    driver = loaded_driver()
    key, value = data.draw(mutated(topic))
    driver.pipe("transactions", VICTIM, transaction(VICTIM, "3000", WHEN, 1), timestamp=at(WHEN))

    processed = driver.pipe(topic, key, value, timestamp=at(WHEN))

    assert processed.outcome in PROCESSED | INPUT_REASONS, processed.outcome
    if processed.outcome in INPUT_REASONS:
        assert_bounded_dead_letter(driver, processed.outcome, value)
    else:
        assert driver.produced[driver.topic("dead-letters")] == []
    driver.pipe("transactions", VICTIM, transaction(VICTIM, "3000", WHEN, 2), timestamp=at(WHEN))
    achieved = [e for e in driver.read("promotions") if e["customer_id"] == VICTIM]
    assert [e["kind"] for e in achieved] == ["achievement"]


DEFINITION_REASONS = INPUT_REASONS | {"invalid_definition"}


@st.composite
def mutated_definition(draw: st.DrawFn) -> dict[str, Any]:
    body = monthly_gross_definition(milestone_id="m-fuzz")
    target = body["group"]["targets"][0]
    where, field = draw(
        st.sampled_from(
            [(body, k) for k in sorted(body) if k not in ("type", "milestone_id")]
            + [(target, k) for k in sorted(target)]
        )
    )
    if draw(st.booleans()):
        where.pop(field)
    else:
        where[field] = draw(json_values | hostile_text)
    return body


@settings(max_examples=150, deadline=None)
@given(body=mutated_definition())
def test_hostile_definition_is_applied_or_dead_lettered_and_the_others_keep_working(body):
    driver = loaded_driver()
    before = set(driver.topology.registry.milestones)

    processed = driver.pipe("definitions", "m-fuzz", body, timestamp=at(WHEN))

    assert processed.outcome in PROCESSED | DEFINITION_REASONS, processed.outcome
    if processed.outcome in DEFINITION_REASONS:
        assert_bounded_dead_letter(driver, processed.outcome, orjson.dumps(body))
        assert set(driver.topology.registry.milestones) == before
    driver.pipe("transactions", VICTIM, transaction(VICTIM, "5000", WHEN, 1), timestamp=at(WHEN))
    assert [e["milestone_id"] for e in driver.read("promotions") if e.get("milestone_id") == "m-monthly"]


# --------------------------------------------------------------- known-bad, known reason
CONTROL_AND_FORMAT = ["\x00", "\x1f", "\x7f", "\x85", "\u200b", "\u200e", "\u202e", "\u2066", "\u2028", "\ufeff"]
ID_FIELDS = [
    ("transactions", "customer_id"),
    ("transactions", "event_id"),
    ("transactions", "bill_id"),
    ("enrolments", "milestone_id"),
    ("redemptions", "series_id"),
    ("transactions", "store_id"),
]


@pytest.mark.parametrize("char", CONTROL_AND_FORMAT, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("topic,field", ID_FIELDS)
def test_an_id_with_an_invisible_or_control_character_is_a_schema_violation(topic, field, char):
    driver = loaded_driver()
    body = dict(valid_records(FUZZED)[topic])
    body[field] = f"{body.get(field, 'store-1')}{char}outbox"
    key = body["customer_id"].encode()
    processed = driver.pipe(topic, key, body, timestamp=at(WHEN))
    assert processed.outcome == "schema_violation"
    assert f"U+{ord(char):04X}" in driver.read("dead-letters")[0]["detail"]


@pytest.mark.parametrize(
    "stamp",
    [
        1704067200,
        "1704067200",
        1704067200000,
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59+00:00",
        "2024-01-05T10:00:00",
    ],
)
def test_a_timestamp_that_is_not_iso_8601_with_a_zone_in_range_is_a_schema_violation(stamp):
    driver = loaded_driver()
    processed = driver.pipe(
        "transactions", FUZZED, transaction(FUZZED, "10", WHEN, event_time=stamp), timestamp=at(WHEN)
    )
    assert processed.outcome == "schema_violation"
    assert "event_time" in driver.read("dead-letters")[0]["detail"]
