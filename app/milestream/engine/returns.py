"""Returns: bills kept for later returns, and the adjustment a return carries into the next cycle.

The spec's organisation settings (overridable per milestone):

* ``adjust_on_bill_return``: a whole-bill return leaves the award already earned
  in the bill's cycle alone, and the next cycle starts below zero by what the
  bill counted towards each target (₹3,000 in the spec's example; one
  transaction on a count target).
* ``line_item_return = "prorate"``: a line-item return carries the returned share
  of the bill's gross amount times the customer's target, rounded to two
  decimals (₹5,000 × 1,750 / 6,500 = ₹1,346.15), on amount targets;
  ``"ignore"`` leaves progress alone.

"Next cycle" is the cycle after the bill's, or the current one if the return
comes later than that. Only additive (sum) targets can go below zero; days of
activity, daily maxima and streaks are not adjusted.

A bill is kept in the customer's state (``"b"``) only when a milestone with one
of these settings on counted it, for the organisation's ``bill_retention_days``
and at most ``MAX_BILLS`` bills per customer. A return that finds no retained
bill is recorded with the reason (``bill_unknown`` or ``bill_expired``) on the
late-events topic; it still counts as a "return" activity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..schemas.base import utc_iso
from ..schemas.definitions import AMOUNT_KPIS, Activity, RollingCycles, TillAchievedCycles
from ..schemas.inputs import Return, Transaction
from .cycles import fixed_window_at, rolling_window_at
from .measures import Accumulation, TargetPlan
from .registry import Compiled, Registry

if TYPE_CHECKING:
    from .core import Engine, Result

MAX_BILLS = 1000  # per customer, newest kept
MAX_EXPIRED_IDS = 200  # expired bill ids remembered, to tell "expired" from "unknown"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class UnmatchedReturn:
    """A return whose bill is not (or no longer) in the customer's state."""

    customer_id: str
    event_id: str
    return_id: str
    bill_id: str
    reason: str  # "bill_unknown" | "bill_expired"
    event_time: datetime


def adjusts_returns(compiled: Compiled) -> bool:
    return compiled.adjusts_returns


class BillBook:
    """Remembers the bills that return adjustments need, and applies returns to them."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @staticmethod
    def note_contribution(
        compiled: Compiled, cycle: int, contributions: list[tuple[TargetPlan, Decimal]], counted: dict[str, list[Any]]
    ) -> None:
        """Add to ``counted`` (milestone -> [cycle, {target: value}]) what a bill counted towards."""
        if not adjusts_returns(compiled):
            return
        values = {
            plan.target.target_id: format(v, "f") for plan, v in contributions if plan.accumulation is Accumulation.SUM
        }
        if values:
            counted[compiled.definition.milestone_id] = [cycle, values]

    def remember(self, state: dict[str, Any], event: Transaction, counted: dict[str, list[Any]]) -> None:
        """Keep the bill if a milestone that adjusts on returns counted it; drop expired bills."""
        if not counted:
            return
        bills: dict[str, Any] = state.setdefault("b", {})
        kept = bills.get(event.bill_id)
        if kept is not None and self.registry.backfill_of is not None:
            kept["m"].update(counted)  # a backfilled milestone joins what the bill counted for live
        else:
            bills[event.bill_id] = {"t": utc_iso(event.event_time), "g": format(event.gross_amount, "f"), "m": counted}
        retention = timedelta(days=self._retention_days(counted))
        expired = [
            bid for bid, bill in bills.items() if datetime.fromisoformat(bill["t"]) < event.event_time - retention
        ]
        if len(bills) - len(expired) > MAX_BILLS:
            by_age = sorted((b["t"], bid) for bid, b in bills.items() if bid not in expired)
            expired += [bid for _, bid in by_age[: len(bills) - len(expired) - MAX_BILLS]]
        if expired:
            gone = state.setdefault("xb", [])
            for bid in expired:
                del bills[bid]
                gone.append(bid)
            del gone[:-MAX_EXPIRED_IDS]

    def _retention_days(self, counted: dict[str, Any]) -> int:
        orgs = {self.registry.milestones[mid].definition.org_id for mid in counted if mid in self.registry.milestones}
        return max((self.registry.settings_for(org).bill_retention_days for org in orgs), default=400)

    def apply_return(self, engine: Engine, state: dict[str, Any], event: Return, result: Result) -> None:
        """Carry the return's adjustment into the next cycle of every milestone the bill counted for."""
        adjusting = [
            c
            for c in self.registry.listening(Activity.TRANSACTION.value, event.org_id)
            if adjusts_returns(c) and c.definition.active
        ]
        if not adjusting:
            return
        bill = state.get("b", {}).get(event.bill_id)
        if bill is None:
            if any(c.definition.starts_at <= event.event_time for c in adjusting):
                reason = "bill_expired" if event.bill_id in state.get("xb", ()) else "bill_unknown"
                result.unmatched.append(
                    UnmatchedReturn(
                        event.customer_id, event.event_id, event.return_id, event.bill_id, reason, event.event_time
                    )
                )
            return
        backfilled = self.registry.backfill_of
        # A backfill applies returns to its milestone alone, so it keeps their ids apart: the same
        # return may have been applied live to the others before the milestone existed.
        applied = (
            bill.setdefault("r", []) if backfilled is None else bill.setdefault("rb", {}).setdefault(backfilled, [])
        )
        if event.return_id in applied:  # the same return sent twice
            return
        applied.append(event.return_id)
        gross = Decimal(bill["g"])
        returned = sum((line.amount for line in event.line_items), Decimal(0))
        for milestone_id, (bill_cycle, values) in bill["m"].items():
            compiled = self.registry.milestones.get(milestone_id)
            ms = state.get("m", {}).get(milestone_id)
            if compiled is None or ms is None or not compiled.definition.active:
                continue
            targets = {t.target_id: t for t in compiled.targets}
            if event.scope == "bill":
                if not compiled.settings.adjust_on_bill_return:
                    continue
                adjustment = {tid: -Decimal(v) for tid, v in values.items()}
            else:
                if compiled.settings.line_item_return != "prorate" or gross <= 0:
                    continue
                adjustment = {
                    tid: -(returned / gross * engine.defined_value(compiled, ms, targets[tid], bill_cycle)).quantize(
                        CENT
                    )
                    for tid in values
                    if tid in targets and targets[tid].kpi in AMOUNT_KPIS
                }
            current = _cycle_index_at(compiled, ms, event.event_time)
            into = max(bill_cycle + 1, current or 0, ms.get("cl", 0) + 1)
            carry(ms, into, adjustment)


def _cycle_index_at(compiled: Compiled, ms: dict[str, Any], moment: datetime) -> int | None:
    definition = compiled.definition
    if isinstance(definition.cycles, TillAchievedCycles):
        return ms.get("tc", 1)
    if isinstance(definition.cycles, RollingCycles):
        window = rolling_window_at(definition, datetime.fromisoformat(ms["an"]), moment) if "an" in ms else None
    else:
        window = fixed_window_at(definition, moment)
    return window.index if window else None


def carry(ms: dict[str, Any], cycle_index: int, adjustment: dict[str, Decimal]) -> None:
    """Add ``adjustment`` to a cycle's progress: now if the cycle is open, else when it opens."""
    cycle = ms.get("c", {}).get(str(cycle_index))
    for target_id, value in adjustment.items():
        if not value:
            continue
        if cycle is not None:
            progress = cycle["t"].setdefault(target_id, {})
            progress["v"] = format(Decimal(progress.get("v", "0")) + value, "f")
        else:
            pending = ms.setdefault("adj", {}).setdefault(str(cycle_index), {})
            pending[target_id] = format(Decimal(pending.get(target_id, "0")) + value, "f")
