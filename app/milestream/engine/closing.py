"""Closing cycles: the cycle-close event of one customer, and when it is due.

A cycle closes when its end plus the milestone's buffer days has passed (late
data can count until then). Each close emits one ``cycle_close`` event for the
customer, achieved or not (in end-of-cycle award mode preceded by the
sub-target events of the sub-targets reached in the cycle), and drops the cycle's progress from the state; the
highest closed index per milestone (``"cl"``) keeps a closed cycle closed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterator

from .core import Engine
from .cycles import Window, period_name


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


def close_due(engine: Engine, state: dict[str, Any], customer_id: str, now: datetime) -> list[dict[str, Any]]:
    """Close every cycle of this customer that is due at ``now``; return the cycle-close events."""
    outputs = []
    for due, milestone_id, index in sorted(due_closes(engine, state)):
        if due > now:
            continue
        compiled = engine.registry.milestones[milestone_id]
        ms = state["m"][milestone_id]
        cycle = ms["c"].pop(str(index))
        window = Window(
            index,
            period_name(compiled.definition, index),
            datetime.fromisoformat(cycle["s"]),
            datetime.fromisoformat(cycle["e"]),
        )
        if not compiled.settings.award_when_target_achieved:
            # End-of-cycle award mode: sub-targets reached in the cycle take effect now.
            outputs += engine.deferred_sub_target_events(compiled, ms, cycle, window, customer_id)
        outputs.append(engine.close_event(compiled, ms, cycle, window, customer_id, window.end, "cycle-end"))
        ms["cl"] = max(ms.get("cl", 0), index)
    return outputs

