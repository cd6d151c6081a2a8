"""Input schemas are strict: decimals, aware timestamps, non-empty ids, bounded sizes."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from milestream.schemas.inputs import LedgerEntry, Return, Transaction
from tests.factories import transaction

WHEN = "2024-01-05T10:00:00+05:30"


def test_amounts_are_decimals_not_floats():
    txn = Transaction.model_validate(transaction("c1", "0.1", WHEN, net_amount=0.2))
    assert txn.gross_amount == Decimal("0.1")
    assert isinstance(txn.net_amount, Decimal)
    assert txn.model_dump(mode="json")["gross_amount"] == "0.1"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"event_time": "2024-01-05T10:00:00"}, "timezone"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": " c1"}, "customer_id"),
        ({"gross_amount": "NaN"}, "gross_amount"),
        ({"gross_amount": "-1"}, "gross_amount"),
        ({"bill_id": "x" * 200}, "bill_id"),
        ({"schema_version": 2}, "schema_version"),
        ({"line_items": [{"line_id": "1", "sku": "s", "gross_amount": "1"}] * 501}, "line_items"),
        ({"extended_fields": {f"f{i}": "v" for i in range(65)}}, "extended_fields"),
        ({"unexpected": True}, "unexpected"),
    ],
)
def test_transaction_rejects(change, message):
    with pytest.raises(ValidationError) as error:
        Transaction.model_validate({**transaction("c1", "10", WHEN), **change})
    assert message in str(error.value)


def test_duplicate_line_ids_are_rejected():
    lines = [{"line_id": "1", "sku": "a", "gross_amount": "1"}, {"line_id": "1", "sku": "b", "gross_amount": "2"}]
    with pytest.raises(ValidationError, match="unique"):
        Transaction.model_validate(transaction("c1", "3", WHEN, line_items=lines))


def test_return_scope_must_match_lines():
    base = {
        "type": "return",
        "event_id": "r1",
        "customer_id": "c1",
        "event_time": WHEN,
        "return_id": "r1",
        "bill_id": "b1",
    }
    with pytest.raises(ValidationError, match="at least one"):
        Return.model_validate({**base, "scope": "line_items"})
    assert Return.model_validate({**base, "scope": "bill"}).scope == "bill"


def test_manual_adjustment_needs_reason_and_actor():
    base = {
        "type": "ledger_entry",
        "event_id": "l1",
        "customer_id": "c1",
        "event_time": WHEN,
        "entry_id": "l1",
        "amount": "50",
    }
    with pytest.raises(ValidationError, match="reason"):
        LedgerEntry.model_validate({**base, "source": "adjustment"})
    entry = LedgerEntry.model_validate(
        {**base, "source": "adjustment", "reason": "missed action", "actor": "ops@brand"}
    )
    assert entry.amount == Decimal("50")
