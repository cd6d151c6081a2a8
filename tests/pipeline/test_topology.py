"""The topology in-process: bad input, redelivery, outbox."""

import base64
import hashlib

import orjson
import pytest

from milestream.pipeline.driver import TopologyTestDriver
from milestream.state.keys import Namespace
from tests.engine.builders import customer_state
from tests.factories import at, monthly_gross_definition, transaction
from tests.support.stores import RecordingStore

WHEN = "2024-01-05T10:00:00+05:30"


@pytest.fixture
def loaded():
    driver = TopologyTestDriver(store=RecordingStore())
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    return driver


BAD_RECORDS = [
    ("malformed_json", "c1", b'{"type": "transaction",'),
    ("schema_violation", "c1", orjson.dumps(transaction("c1", "12.5", "2024-01-05T10:00:00"))),  # naive timestamp
    ("schema_violation", "c1", orjson.dumps(transaction("c1", "-5", WHEN))),  # negative amount
    ("schema_violation", "c1", orjson.dumps(transaction("c1", "1e3", WHEN, customer_id=""))),
    ("schema_violation", "c1", orjson.dumps({**transaction("c1", "10", WHEN), "surprise": 1})),
    ("schema_violation", "c1", b"[1, 2, 3]"),
    ("unknown_event_type", "c1", orjson.dumps({**transaction("c1", "10", WHEN), "type": "refund"})),
    ("unknown_event_type", "c1", orjson.dumps({"event_id": "x"})),
    ("oversize_payload", "c1", orjson.dumps({**transaction("c1", "10", WHEN), "pad": "x" * 300_000})),
    ("wrong_key", "someone-else", orjson.dumps(transaction("c1", "10", WHEN))),
    ("wrong_key", None, orjson.dumps(transaction("c1", "10", WHEN))),
]


@pytest.mark.parametrize("reason,key,value", BAD_RECORDS, ids=[f"{r[0]}-{i}" for i, r in enumerate(BAD_RECORDS)])
def test_bad_input_goes_to_dead_letters_with_reason_and_original_bytes(loaded, reason, key, value):
    processed = loaded.pipe("transactions", key, value, timestamp=at(WHEN))
    assert processed.outcome == reason
    (letter,) = loaded.read("dead-letters")
    assert letter["reason"] == reason
    kept = base64.b64decode(letter["value_b64"])
    assert kept == value[: len(kept)] and len(kept) == min(len(value), 16 * 1024)
    assert letter["value_bytes"] == len(value)
    assert letter["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter["truncated"] is (len(value) > 16 * 1024)
    assert letter["source_topic"] == "milestream.transactions"
    assert letter["source_offset"] == 0
    assert letter["detail"]


def test_valid_events_around_bad_ones_still_count(loaded):
    loaded.pipe("transactions", "c1", transaction("c1", "3000", WHEN, 1), timestamp=at(WHEN))
    loaded.pipe("transactions", "c1", b"not json", timestamp=at(WHEN))
    loaded.pipe("transactions", "c1", transaction("c1", "3000", WHEN, 2), timestamp=at(WHEN))
    assert [e["kind"] for e in loaded.read("promotions")] == ["achievement"]
    assert len(loaded.read("dead-letters")) == 1


def test_invalid_definition_is_dead_lettered_and_not_applied(driver):
    broken = monthly_gross_definition(name=" padded name ")
    processed = driver.pipe("definitions", "m-monthly", broken)
    assert processed.outcome == "invalid_definition"
    assert "name" in driver.read("dead-letters")[0]["detail"]
    assert driver.topology.registry.milestones == {}


def test_definition_key_must_be_its_id(driver):
    assert driver.pipe("definitions", "other", monthly_gross_definition()).outcome == "wrong_key"


def test_redelivered_record_is_not_applied_twice(loaded):
    first = loaded.pipe("transactions", "c1", transaction("c1", "3000", WHEN, 1), timestamp=at(WHEN), offset=0)
    again = loaded.pipe("transactions", "c1", transaction("c1", "3000", WHEN, 1), timestamp=at(WHEN), offset=0)
    assert (first.outcome, again.outcome) == ("no_output", "duplicate")
    assert loaded.read("promotions") == []  # 3,000 counted once, not 6,000


CLOSE_INDEX = (Namespace.CLOSE_DIRECTORY, Namespace.CLOSE_SLOT, Namespace.CLOSE_ENTRY)


def index_keys(puts):
    return [k for k, _ in puts if k.namespace in CLOSE_INDEX]


def test_redelivered_record_writes_the_state_that_includes_it_again(loaded):
    """A crash can keep the local write of a state while its changelog write is lost; the redelivery
    re-sends that state (unchanged), so the record is acked only once the changelog has it too."""
    loaded.pipe("transactions", "c1", transaction("c1", "3000", WHEN, 1), timestamp=at(WHEN), offset=0)
    state = customer_state(loaded, "c1")
    puts = loaded.store.puts
    puts.clear()
    again = loaded.pipe("transactions", "c1", transaction("c1", "3000", WHEN, 1), timestamp=at(WHEN), offset=0)
    assert again.outcome == "duplicate"
    # The state last, after its close-index entry, all unchanged.
    assert puts[-1] == (Namespace.CUSTOMER.key("c1"), state)
    entry = Namespace.CLOSE_ENTRY.key(state["m"]["m-monthly"]["c"]["1"]["i"])
    assert [k for k, _ in puts[:-1]] == [entry, *index_keys(puts[1:-1])]
    assert all(loaded.store.get(k) == v for k, v in puts)


def test_redelivered_record_re_emits_its_outputs_with_the_same_ids(loaded):
    loaded.pipe("transactions", "c1", transaction("c1", "6000", WHEN, 1), timestamp=at(WHEN), offset=0)
    state, outbox = customer_state(loaded, "c1"), loaded.store.get(Namespace.OUTBOX.key("c1"))
    puts = loaded.store.puts
    puts.clear()
    replay = loaded.pipe("transactions", "c1", transaction("c1", "6000", WHEN, 1), timestamp=at(WHEN), offset=0)
    assert replay.outcome == "duplicate"
    first, second = loaded.read("promotions")
    assert first == second
    assert puts[-2:] == [(Namespace.OUTBOX.key("c1"), outbox), (Namespace.CUSTOMER.key("c1"), state)]  # outbox first
    assert all(k.namespace in CLOSE_INDEX for k, _ in puts[:-2])  # after the close-index entry


def test_offsets_are_tracked_per_partition(loaded):
    loaded.pipe("transactions", "c1", transaction("c1", "3000", WHEN, 1), timestamp=at(WHEN), partition=0, offset=5)
    loaded.pipe("returns", "c1", b"{}", timestamp=at(WHEN), partition=0, offset=0)
    second = loaded.pipe(
        "transactions", "c1", transaction("c1", "3000", WHEN, 2), timestamp=at(WHEN), partition=0, offset=6
    )
    assert second.outcome == "applied"


def test_tally_counts_what_a_slice_of_records_did():
    from milestream.pipeline.topology import Processed, tally

    applied = Processed("applied")
    applied.milestone_events = [{"kind": "sub_target"}, {"kind": "achievement"}]
    late = Processed("no_output")
    late.late_events = 2
    backfilled = Processed("backfilled")
    backfilled.backfill = "m-1"
    counted = tally(
        [
            (applied, "tx"),
            (late, "tx"),
            (Processed("no_output"), "tx"),
            (Processed("schema_violation"), "events"),
            (backfilled, "bf"),
        ]
    )
    assert counted.outcomes == {
        ("tx", "applied"): 1,
        ("tx", "no_output"): 2,
        ("events", "schema_violation"): 1,
        ("bf", "backfilled"): 1,
    }
    assert counted.dead_letters == {"schema_violation": 1}
    assert counted.milestone_events == {"sub_target": 1, "achievement": 1}
    assert counted.late_events == 2
    assert counted.backfill == {("m-1", "backfilled"): 1}
