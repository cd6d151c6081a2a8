"""What one activity contributes to one target's KPI.

``measure`` returns the contribution of an event to a target (``None`` when
the event does not count for it: wrong activity, out of scope, filtered out).
How contributions accumulate over a cycle depends on the KPI:

* ``SUM``: amounts, counts, quantities, currency: added up;
* ``DAYS``: days of activity: the set of local dates with a contribution;
* ``DAILY_MAX``: sum of each day's highest value;
* ``STREAK``: the longest run of consecutive achieved cycles of a tracked milestone.

All three are commutative, so the order events arrive in within a cycle does
not change the result.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Any

from ..schemas.definitions import Activity, Kpi, Target
from ..schemas.filters import as_number
from ..schemas.inputs import (
    BehaviouralEvent,
    CustomerActivity,
    InputEvent,
    LedgerEntry,
    LineItem,
    Return,
    Transaction,
)
from .filters import evaluate

ONE = Decimal(1)
ZERO = Decimal(0)


class Accumulation(Enum):
    SUM = "sum"
    DAYS = "days"
    DAILY_MAX = "daily_max"
    STREAK = "streak"


ACCUMULATION: dict[Kpi, Accumulation] = {
    Kpi.DAYS_OF_ACTIVITY: Accumulation.DAYS,
    Kpi.EXTENDED_FIELD_DAILY_MAX: Accumulation.DAILY_MAX,
    Kpi.ATTRIBUTE_DAILY_MAX: Accumulation.DAILY_MAX,
    Kpi.STREAK: Accumulation.STREAK,
}


def accumulation(kpi: Kpi) -> Accumulation:
    return ACCUMULATION.get(kpi, Accumulation.SUM)


# Which input event type feeds which activity.
EVENT_ACTIVITY: dict[str, Activity] = {
    "transaction": Activity.TRANSACTION,
    "behavioural_event": Activity.BEHAVIOURAL_EVENT,
    "ledger_entry": Activity.CURRENCY_EARNED,
    "return": Activity.RETURN,
}


def activity_of(event: Any) -> Activity | None:
    if getattr(event, "type", None) == "milestone_achieved":
        return Activity.MILESTONE_ACHIEVED
    if isinstance(event, CustomerActivity):
        return Activity(event.activity.value)
    return EVENT_ACTIVITY.get(event.type)


def in_scope(target: Target, event: Any) -> bool:
    scope = target.scope
    if scope.stores and getattr(event, "store_id", None) not in scope.stores:
        return False
    if scope.zones and getattr(event, "zone_id", None) not in scope.zones:
        return False
    if scope.concepts and getattr(event, "concept_id", None) not in scope.concepts:
        return False
    return True


def _line_context(txn: Transaction, line: LineItem) -> dict[str, Any]:
    return {"transaction": txn, "line_item": line}


def _field_value(fields: dict[str, Any], name: str) -> Decimal | None:
    return as_number(fields.get(name)) if name in fields else None


def _transaction_measure(target: Target, txn: Transaction) -> Decimal | None:
    kpi = target.kpi
    if target.level == "bill":
        if target.filter is not None and not evaluate(target.filter, {"transaction": txn}):
            return None
        if kpi == Kpi.GROSS_AMOUNT:
            return txn.gross_amount
        if kpi == Kpi.NET_AMOUNT:
            return txn.net
        if kpi in (Kpi.COUNT, Kpi.DAYS_OF_ACTIVITY):
            return ONE
        if kpi == Kpi.EXTENDED_FIELD_COUNT:
            return ONE if target.field in txn.extended_fields else None
        value = _field_value(txn.extended_fields, target.field or "")
        return value  # extended-field sum / daily max
    lines = txn.line_items
    if target.filter is not None:
        lines = [line for line in lines if evaluate(target.filter, _line_context(txn, line))]
    if not lines:
        return None
    if kpi == Kpi.GROSS_AMOUNT:
        return sum((line.gross_amount for line in lines), ZERO)
    if kpi == Kpi.NET_AMOUNT:
        return sum((line.net for line in lines), ZERO)
    if kpi == Kpi.QUANTITY:
        return sum((line.quantity for line in lines), ZERO)
    field = target.field or ""
    if kpi == Kpi.EXTENDED_FIELD_COUNT:
        hits = sum(1 for line in lines if field in line.extended_fields)
        return Decimal(hits) if hits else None
    values = [v for line in lines if (v := _field_value(line.extended_fields, field)) is not None]
    if not values:
        return None
    # A transaction's contribution to a daily-max KPI is its highest line value.
    return max(values) if kpi == Kpi.EXTENDED_FIELD_DAILY_MAX else sum(values, ZERO)


def _event_measure(target: Target, event: BehaviouralEvent | CustomerActivity) -> Decimal | None:
    if isinstance(event, BehaviouralEvent) and event.name != target.event_name:
        return None
    if target.filter is not None and not evaluate(target.filter, {"event": event}):
        return None
    if target.kpi in (Kpi.COUNT, Kpi.DAYS_OF_ACTIVITY):
        return ONE
    return _field_value(event.attributes, target.field or "")


def _ledger_measure(target: Target, entry: LedgerEntry) -> Decimal | None:
    if entry.currency != target.currency or entry.amount <= 0:
        return None
    if target.currency_kind != "both" and entry.kind.value != target.currency_kind:
        return None
    if target.filter is not None and not evaluate(target.filter, {"entry": entry}):
        return None
    return entry.amount


def measure(target: Target, event: InputEvent) -> Decimal | None:
    """The contribution of ``event`` to ``target``, or ``None`` if it does not count."""
    if activity_of(event) != target.activity or not in_scope(target, event):
        return None
    if isinstance(event, Transaction):
        return _transaction_measure(target, event)
    if isinstance(event, (BehaviouralEvent, CustomerActivity)):
        return _event_measure(target, event)
    if isinstance(event, LedgerEntry):
        return _ledger_measure(target, event)
    if isinstance(event, Return):
        if target.filter is not None and not evaluate(target.filter, {"event": event}):
            return None
        return ONE  # returns as a countable activity
    if target.activity == Activity.MILESTONE_ACHIEVED:
        if getattr(event, "milestone_id", None) != target.source_milestone_id:
            return None
        # A streak accumulates which of the tracked milestone's cycles were achieved.
        return Decimal(event.cycle) if target.kpi == Kpi.STREAK else ONE  # type: ignore[attr-defined]
    return None
