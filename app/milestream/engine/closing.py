"""Closing cycles: the cycle-close events of one customer, and when they are due.

A cycle closes when its end plus the milestone's buffer days has passed (late
data can count until then). Each close emits one ``cycle_close`` event for an
enrolled customer, achieved or not (in end-of-cycle award mode preceded by the
sub-target events reached in the cycle), drops the cycle's progress and opens
the customer's next cycle, so an enrolled customer with no activity still gets
a close for every cycle. A deactivated milestone sends no close, but its cycles
keep opening, so closes resume for everyone when it is reactivated. The highest closed index per milestone (``"cl"``)
keeps a closed cycle closed. Who calls this, and when, is the caller's
business: the pipeline's close index (``pipeline/close_index.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .core import Engine, Result
from .performance_enrolment import enrol_by_performance, remember_closed_cycle


def due_closes(engine: Engine, state: dict[str, Any]) -> Iterator[tuple[datetime, str, int]]:
    """(due time, milestone id, cycle index) of every open cycle in a customer's state."""
    for milestone_id, ms in state.get("m", {}).items():
        compiled = engine.registry.milestones.get(milestone_id)
        if compiled is None:
            continue
        buffer = timedelta(days=compiled.settings.buffer_days)
        for index, cycle in ms.get("c", {}).items():
            if cycle.get("e"):
                yield datetime.fromisoformat(cycle["e"]) + buffer, milestone_id, int(index)


def close_due(
    engine: Engine, state: dict[str, Any], customer_id: str, now: datetime, milestone_id: str | None = None
) -> Result:
    """Close every cycle of this customer (of one milestone, if given) that is due at ``now``."""
    result = Result()
    for due, mid, index in sorted(due_closes(engine, state)):
        if due > now or (milestone_id is not None and mid != milestone_id):
            continue
        compiled = engine.registry.milestones[mid]
        ms = state["m"][mid]
        cycle = ms["c"].pop(str(index))
        ms["cl"] = max(ms.get("cl", 0), index)
        if not cycle.get("i") or not engine.is_enrolled(compiled, ms, customer_id):
            continue  # progress kept for a customer not (or no longer) enrolled: no close
        window = engine.cycle_window(compiled, index, cycle)
        # The cycle's progress, read by both below: neither changes what it is computed from.
        statuses = engine._progress(compiled, ms, cycle, index)
        remember_closed_cycle(engine, compiled, ms, cycle, window, statuses)
        if compiled.definition.active:  # a deactivated milestone sends nothing, but keeps its schedule
            if not compiled.settings.award_when_target_achieved:
                # End-of-cycle award mode: sub-targets reached in the cycle take effect now.
                result.outputs += engine.deferred_sub_target_events(compiled, ms, cycle, window, customer_id)
            assert window.end is not None  # only a cycle with an end is ever due
            result.outputs.append(
                engine.close_event(compiled, ms, cycle, window, customer_id, window.end, "cycle-end", statuses)
            )
        anchor = datetime.fromisoformat(ms["an"]) if "an" in ms else None
        following = engine.next_cycle_window(compiled, window, anchor)
        if following is not None:
            engine.open_cycle(compiled, ms, following, result, indexed=True)
    enrol_by_performance(engine, state, customer_id, now, now, "cycle-end", result)
    return result
