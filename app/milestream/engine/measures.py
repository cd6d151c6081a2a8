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

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from ..schemas.definitions import Activity, Kpi, SubTarget, Target
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
from .filters import Predicate, compile_filter

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


@dataclass(frozen=True, slots=True)
class SubTargetPlan:
    sub: SubTarget
    fired_key: str  # its key in a cycle's fired list ("sub:<target id>:<name>")
    trigger: str  # the output's trigger ("sub_target:<name>")


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """A target with what measuring and evaluating it takes, derived once per definition."""

    target: Target
    accumulation: Accumulation
    predicate: Predicate | None  # the target's filter, compiled
    # The scope's lists as sets (None: no restriction).
    stores: frozenset[str] | None
    zones: frozenset[str] | None
    concepts: frozenset[str] | None
    achieved_key: str  # its key in a cycle's fired list ("ach:<target id>")
    sub_targets: tuple[SubTargetPlan, ...]

    @classmethod
    def of(cls, target: Target) -> TargetPlan:
        scope = target.scope
        return cls(
            target=target,
            accumulation=accumulation(target.kpi),
            predicate=compile_filter(target.filter) if target.filter is not None else None,
            stores=frozenset(scope.stores) if scope.stores else None,
            zones=frozenset(scope.zones) if scope.zones else None,
            concepts=frozenset(scope.concepts) if scope.concepts else None,
            achieved_key=f"ach:{target.target_id}",
            sub_targets=tuple(
                SubTargetPlan(sub, f"sub:{target.target_id}:{sub.name}", f"sub_target:{sub.name}")
                for sub in target.sub_targets
            ),
        )


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


def in_scope(plan: TargetPlan, event: Any) -> bool:
    if plan.stores is not None and getattr(event, "store_id", None) not in plan.stores:
        return False
    if plan.zones is not None and getattr(event, "zone_id", None) not in plan.zones:
        return False
    if plan.concepts is not None and getattr(event, "concept_id", None) not in plan.concepts:
        return False
    return True


def _line_context(txn: Transaction, line: LineItem) -> dict[str, Any]:
    return {"transaction": txn, "line_item": line}


def _field_value(fields: dict[str, Any], name: str) -> Decimal | None:
    return as_number(fields.get(name)) if name in fields else None


def _transaction_measure(plan: TargetPlan, txn: Transaction) -> Decimal | None:
    target, predicate = plan.target, plan.predicate
    kpi = target.kpi
    if target.level == "bill":
        if predicate is not None and not predicate({"transaction": txn}):
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
    if predicate is not None:
        lines = [line for line in lines if predicate(_line_context(txn, line))]
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


def _event_measure(plan: TargetPlan, event: BehaviouralEvent | CustomerActivity) -> Decimal | None:
    target = plan.target
    if isinstance(event, BehaviouralEvent) and event.name != target.event_name:
        return None
    if plan.predicate is not None and not plan.predicate({"event": event}):
        return None
    if target.kpi in (Kpi.COUNT, Kpi.DAYS_OF_ACTIVITY):
        return ONE
    return _field_value(event.attributes, target.field or "")


def _ledger_measure(plan: TargetPlan, entry: LedgerEntry) -> Decimal | None:
    target = plan.target
    if entry.currency != target.currency or entry.amount <= 0:
        return None
    if target.currency_kind != "both" and entry.kind.value != target.currency_kind:
        return None
    if plan.predicate is not None and not plan.predicate({"entry": entry}):
        return None
    return entry.amount


def measure(plan: TargetPlan, event: InputEvent, activity: Activity | None = None) -> Decimal | None:
    """The contribution of ``event`` to a target, or ``None`` if it does not count
    (``activity``: the event's, when the caller knows it already)."""
    target = plan.target
    if activity is None:
        activity = activity_of(event)
    if activity != target.activity or not in_scope(plan, event):
        return None
    if isinstance(event, Transaction):
        return _transaction_measure(plan, event)
    if isinstance(event, (BehaviouralEvent, CustomerActivity)):
        return _event_measure(plan, event)
    if isinstance(event, LedgerEntry):
        return _ledger_measure(plan, event)
    if isinstance(event, Return):
        if plan.predicate is not None and not plan.predicate({"event": event}):
            return None
        return ONE  # returns as a countable activity
    if target.activity == Activity.MILESTONE_ACHIEVED:
        if getattr(event, "milestone_id", None) != target.source_milestone_id:
            return None
        # A streak accumulates which of the tracked milestone's cycles were achieved.
        return Decimal(event.cycle) if target.kpi == Kpi.STREAK else ONE  # type: ignore[attr-defined]
    return None
