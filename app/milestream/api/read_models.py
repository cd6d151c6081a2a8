"""A customer's progress and history, read from their state document and the registry.

Pure functions (no I/O, the clock passed in), computed with the engine's own rules
(engine/core.py): the customer's target per cycle with their overrides, sub-target values,
what counts as reached, the group's condition. The HTTP handlers only fetch the documents.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ..engine.core import Engine
from ..engine.cycles import Window, fixed_window_at
from ..engine.lifecycle import status
from ..engine.registry import GROUP, Compiled
from ..schemas.base import utc_iso
from ..schemas.definitions import CalendarCycles, CustomCycles
from .models import (
    ClosedCycle,
    Contribution,
    CycleHistory,
    CycleProgress,
    CycleRef,
    EnrolmentStatus,
    GroupProgress,
    MilestoneHistory,
    MilestoneProgress,
    Source,
    SubTargetProgress,
    TargetProgress,
)


def _fmt(value: Decimal) -> str:
    return format(value, "f")


def _ref(window: Window) -> CycleRef:
    return CycleRef(
        index=window.index,
        name=window.name,
        start=utc_iso(window.start),
        end=utc_iso(window.end) if window.end else None,
    )


def cycle_progress(
    engine: Engine, compiled: Compiled, ms: dict[str, Any], cycle: dict[str, Any], window: Window, *, open: bool
) -> CycleProgress:
    statuses = engine._progress(compiled, ms, cycle, window.index)
    fired = cycle.get("f", [])
    targets = []
    for p in statuses:
        target = p.target
        overridden = any(o["target_id"] == target.target_id for o in ms.get("ov", ()))
        subs = []
        for sub in target.sub_targets:
            value = engine.sub_target_value(ms, target, sub, p.defined)
            subs.append(
                SubTargetProgress(
                    name=sub.name,
                    criterion=sub.criterion,
                    value=_fmt(value),
                    reached=f"sub:{target.target_id}:{sub.name}" in fired or (p.has_target and p.achieved >= value),
                )
            )
        targets.append(
            TargetProgress(
                target_id=target.target_id,
                name=target.name,
                kpi=target.kpi.value,
                overall=p.overall,
                achieved=_fmt(p.achieved),
                defined=_fmt(p.defined) if p.has_target else None,
                gap=_fmt(p.defined - p.achieved) if p.has_target else None,
                reached=p.reached,
                initial_balance=_fmt(p.initial_balance) if p.initial_balance else None,
                overridden=overridden,
                sub_targets=subs,
            )
        )
    group = None
    if not compiled.single_target:
        met, required, reached = engine.group_status(compiled, statuses)
        group = GroupProgress(
            condition=compiled.definition.group.condition,
            targets_met=int(met),
            targets_required=int(required),
            reached=reached,
        )
    achievements = [key[len("ach:") :] for key in fired if key.startswith("ach:")]
    return CycleProgress(cycle=_ref(window), open=open, targets=targets, group=group, achievements=achievements)


def milestone_progress(
    engine: Engine, compiled: Compiled, ms: dict[str, Any], customer_id: str, now: datetime
) -> MilestoneProgress:
    definition = compiled.definition
    enrolled = engine.is_enrolled(compiled, ms, customer_id)
    opened = []
    for key in sorted(ms.get("c", {}), key=int):
        cycle = ms["c"][key]
        window = engine.cycle_window(compiled, int(key), cycle)
        opened.append((window, cycle_progress(engine, compiled, ms, cycle, window, open=True)))
    current = None
    for window, progress in opened:
        if window.start <= now and (window.end is None or now < window.end):
            current = progress
    if current is None and enrolled and isinstance(definition.cycles, (CalendarCycles, CustomCycles)):
        # No progress yet in the cycle running now: it starts from zero (and the initial balance).
        running = fixed_window_at(definition, max(now, definition.starts_at))
        if running is not None and running.index > ms.get("cl", 0) and now < definition.ends_at:
            if running.start < definition.starts_at:
                running = Window(running.index, running.name, definition.starts_at, running.end)
            empty = {"t": {t: {"b": v} for t, v in ms.get("ib", {}).items()}, "f": []}
            current = cycle_progress(engine, compiled, ms, empty, running, open=False)
    closed = [
        ClosedCycle(
            index=int(key),
            name=_ref(engine.cycle_window(compiled, int(key), kept)).name,
            start=kept["s"],
            end=kept["e"],
            values=dict(kept.get("t", {})),
            achievements=list(kept.get("a", [])),
        )
        for key, kept in sorted(ms.get("h", {}).items(), key=lambda item: int(item[0]))
    ]
    return MilestoneProgress(
        milestone_id=definition.milestone_id,
        name=definition.name,
        org_id=definition.org_id,
        status=status(definition, now)[0],  # type: ignore[arg-type]
        active=definition.active,
        enrolment=EnrolmentStatus(
            enrolled=enrolled,
            method=definition.enrolment.method,
            enrolled_at=ms.get("ena"),
            by_performance_at=ms.get("pe"),
            from_cycle_start=ms.get("fr"),
        ),
        current_cycle=current,
        open_cycles=[progress for _, progress in opened],
        closed_cycles=closed,
        last_closed_cycle=ms.get("cl"),
    )


def customer_milestones(
    engine: Engine, state: dict[str, Any] | None, customer_id: str, org_id: str, now: datetime
) -> list[MilestoneProgress]:
    """Every milestone of the customer's organisation the customer is in (enrolled, or with
    progress kept to count if they enrol), by milestone id."""
    out = []
    for milestone_id, ms in sorted((state or {}).get("m", {}).items()):
        compiled = engine.registry.milestones.get(milestone_id)
        if compiled is None or compiled.definition.org_id != org_id:
            continue
        out.append(milestone_progress(engine, compiled, ms, customer_id, now))
    return out


def milestone_history(
    customer_id: str,
    org_id: str,
    milestone_id: str,
    kept: dict[str, list[dict[str, Any]]],
    per_cycle: int,
    cycles: int,
) -> MilestoneHistory:
    """The history document (pipeline/history.py) as the API shows it, newest cycle first."""
    out = []
    for key in sorted(kept, key=int, reverse=True):
        contributions = []
        for entry in kept[key]:
            topic, partition, offset = entry["src"].rsplit("/", 2)
            contributions.append(
                Contribution(
                    source=Source(topic=topic, partition=int(partition), offset=int(offset)),
                    event_id=entry.get("id"),
                    type=entry.get("type", "unknown"),
                    event_time=entry.get("at"),
                    deltas=entry.get("d", {}),
                    carried=entry.get("carried", {}),
                    late=bool(entry.get("late")),
                )
            )
        out.append(CycleHistory(cycle=int(key), contributions=contributions))
    return MilestoneHistory(
        customer_id=customer_id,
        org_id=org_id,
        milestone_id=milestone_id,
        per_cycle_limit=per_cycle,
        cycles_limit=cycles,
        cycles=out,
    )


def headline_target(compiled: Compiled) -> str:
    """The leaderboard a milestone shows by default: its single target, else the group."""
    return compiled.headline_id if compiled.single_target else GROUP


def default_cycle(compiled: Compiled, now: datetime) -> int:
    """The cycle a leaderboard shows by default: the calendar cycle running now (the last one after
    the end, the first before the start); 1 for cycles that start per customer."""
    definition = compiled.definition
    if not isinstance(definition.cycles, (CalendarCycles, CustomCycles)):
        return 1
    window = fixed_window_at(definition, max(min(now, definition.ends_at), definition.starts_at))
    if window is not None:
        return window.index
    return definition.cycle_count() or 1 if now >= definition.ends_at else 1
