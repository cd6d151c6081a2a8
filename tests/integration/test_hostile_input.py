"""Hostile input through the real broker and a real worker: a few hundred bad records of every
category, interleaved with valid ones on the same partitions and keys.

Every bad record is dead-lettered once, with its specific reason and a size that fits the broker;
every valid neighbour yields exactly its expected output; the worker stays healthy and its
committed offsets reach the end of the input. The in-process counterpart, with generated input,
is ``tests/pipeline/test_hostile_input.py``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.worker import consume, produce, read_to_end, topic, wait_for_commits

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
WHEN = (NOW - timedelta(minutes=5)).isoformat()
DEFINITION = monthly_gross_definition("m-hostile", **live_window(NOW))
GOOD_CUSTOMERS = 60
MAX_DEAD_LETTER_BYTES = 64 * 1024
LINE = {"line_id": "1", "sku": "sku-1", "gross_amount": "10"}


def _body(customer: str, n: int, **fields: Any) -> bytes:
    return orjson.dumps({**transaction(customer, "10", WHEN, f"bad-{n}"), **fields})


def bad_record(n: int, neighbour: str) -> tuple[str, bytes | None, bytes, str]:
    """(logical topic, key, value, expected dead-letter reason) for the n-th bad record."""
    key = neighbour.encode()
    good = transaction(neighbour, "10", WHEN, f"bad-{n}")
    categories: list[tuple[bytes | None, bytes, str]] = [
        (key, b'{"type": "transaction", "event_id": ', "malformed_json"),
        (key, b"\xff\xfe\x00\x01 not utf-8", "malformed_json"),
        (key, b"[" * 50_000 + b"]" * 50_000, "malformed_json"),
        (key, b'"just a string"', "schema_violation"),
        (key, _body(neighbour, n, type="refund"), "unknown_event_type"),
        (key, orjson.dumps({k: v for k, v in good.items() if k != "event_time"}), "schema_violation"),
        (key, _body(neighbour, n, gross_amount="-10"), "schema_violation"),
        (key, _body(neighbour, n, gross_amount="NaN"), "schema_violation"),
        (key, _body(neighbour, n, gross_amount="Infinity"), "schema_violation"),
        (key, _body(neighbour, n, line_items=[LINE, LINE]), "schema_violation"),  # a line id twice in a bill
        (key, _body(neighbour, n, event_time=1_700_000_000), "schema_violation"),
        (key, _body(neighbour, n, event_time="1700000000"), "schema_violation"),
        (key, _body(neighbour, n, event_time="9999-12-31T23:59:59+00:00"), "schema_violation"),
        (key, _body(neighbour, n, event_time="0001-01-01T00:00:00+00:00"), "schema_violation"),
        (key, _body(neighbour, n, event_time=WHEN.replace("+00:00", "")), "schema_violation"),
        (key, _body(neighbour, n, event_id=f"e\u202e{n}"), "schema_violation"),
        (key, _body(neighbour, n, bill_id=f"b\u200b{n}"), "schema_violation"),
        (f"{neighbour}\x00outbox".encode(), _body(f"{neighbour}\x00outbox", n), "schema_violation"),
        (b"\x00close:0", _body("\x00close:0", n), "schema_violation"),
        (key, _body(neighbour, n, surprise=True), "schema_violation"),
        (b"someone-else", _body(neighbour, n), "wrong_key"),
        (None, _body(neighbour, n), "wrong_key"),
        (key, _body(neighbour, n, pad="x" * 300_000), "oversize_payload"),
    ]
    if n % 50 == 0:  # a few just under the broker's 1 MB message limit
        categories = [(key, _body(neighbour, n, pad="x" * 900_000), "oversize_payload")]
    record_key, value, reason = categories[n % len(categories)]
    return "transactions", record_key, value, reason


def test_hundreds_of_bad_records_among_valid_ones(worker):
    settings = worker.settings
    produce(settings, [("definitions", "m-hostile", DEFINITION)])
    worker.wait_for_definition("m-hostile")

    records: list[tuple[str, bytes | None, bytes]] = []
    expected: dict[tuple[str, int, int] | int, str] = {}
    bad_positions: list[int] = []
    n = 0
    for customer_no in range(GOOD_CUSTOMERS):
        customer = f"ok-{customer_no}"
        for purchase in (1, 2):
            records.append(
                ("transactions", customer.encode(), orjson.dumps(transaction(customer, "3000", WHEN, purchase)))
            )
            for _ in range(3 if purchase == 1 else 2):  # bad records between and after a customer's purchases
                logical, key, value, reason = bad_record(n, customer)
                bad_positions.append(len(records))
                expected[len(records)] = reason
                records.append((logical, key, value))
                n += 1
    sent = produce(settings, records)
    expected_by_source = {sent[i]: reason for i, reason in expected.items()}
    assert len(expected_by_source) == n >= 300

    letters_raw: list[dict] = consume(settings, "dead-letters", lambda seen: len(seen) >= n, timeout=240)
    assert len(letters_raw) == n, f"{len(letters_raw)} dead letters for {n} bad records"
    got = {
        (letter["source_topic"], letter["source_partition"], letter["source_offset"]): letter["reason"]
        for letter in letters_raw
    }
    assert got == expected_by_source
    assert Counter(got.values())["processing_error"] == 0

    achievements = consume(
        settings,
        "promotions",
        lambda seen: len([e for e in seen if e["milestone_id"] == "m-hostile"]) >= GOOD_CUSTOMERS,
    )
    mine = [e for e in achievements if e["milestone_id"] == "m-hostile"]
    assert sorted((e["customer_id"], e["kind"], e["achieved_value"]) for e in mine) == sorted(
        (f"ok-{i}", "achievement", "6000") for i in range(GOOD_CUSTOMERS)
    )

    wait_for_commits(settings, "transactions")
    assert worker.process.poll() is None
    assert worker.http("/healthz", expect_json=True)["status"] == "ok"


def test_every_dead_letter_fits_the_broker(worker):
    """Runs after the test above on the same worker: check the size of what it dead-lettered."""
    sizes = [len(value or b"") for _, value in read_to_end(worker.settings, topic(worker.settings, "dead-letters"))]
    assert sizes and max(sizes) <= MAX_DEAD_LETTER_BYTES, max(sizes)
