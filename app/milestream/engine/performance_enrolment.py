"""Enrolment by performance in another milestone (the spec's "advanced audience enrolment").

A milestone whose enrolment method is ``performance`` enrols a customer once the customer's
progress in the source milestone meets its condition: at least ``min_value`` on the named
target (or the target achieved, without ``min_value``; the milestone as a whole, without a
target), in the named cycle only if one is given, in a cycle overlapping the time factor.
The petrol example: 200 L for customers who achieved 100 L, 300 L for those who achieved 200 L.

The condition is about the same customer's state, so it is evaluated on the partition that
owns the customer, after each of their input events and cycle closes:

- The enrolment is that of an enrolment event at the moment the condition became true (the
  event's time, or the close tick's time): the mid-cycle rules and the "track activity from
  the enrolment date" setting apply as for any enrolment. Activity kept before the enrolment
  counts by default, so the litres that achieved target 1 count towards target 2 too.
- Chains resolve within one event: an enrolment that achieves the next target enrols into
  the one after (1 -> 2 -> 3 from a single 300 L fill-up).
- Closed cycles count: what a customer achieved in each closed cycle is kept with the source
  milestone (``"h"``). A milestone defined after the source cycle closed enrols a qualifying
  customer at their next event or cycle close, not at definition time (definitions reach every
  worker; a customer's state lives only on the partition that owns them).
- At most once: only a customer with no enrolment of their own in the milestone (never
  enrolled, nor unenrolled) is enrolled by performance. An unenrolment is not undone by
  performance; a return that lowers the source progress does not unenrol.

Customer state: ``"h": {"<cycle>": {"s": iso, "e": iso, "t": {target_id: "dec"}, "a": [achieved ids]}}``
under the source milestone's id, and ``"pe": iso`` (when enrolled by performance) under the
enrolled milestone's id.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..schemas.base import utc_iso
from ..schemas.codec import Rejected
from ..schemas.definitions import MAX_CYCLES, CustomCycles, MilestoneDefinition, PerformanceCondition, TimeFactor
from ..schemas.inputs import Enrolment
from .cycles import Window, period_name
from .registry import GROUP, Compiled, Registry

if TYPE_CHECKING:
    from .core import Engine, Progress, Result


def performance_of(
    engine: Engine,
    compiled: Compiled,
    ms: dict[str, Any],
    cycle: dict[str, Any],
    index: int,
    statuses: list[Progress] | None = None,
) -> tuple[dict[str, Decimal], list[str]]:
    """A cycle's achieved value per target (and targets met, for a group), and what was achieved
    (``statuses``: the cycle's progress, if the caller has it)."""
    if statuses is None:
        statuses = engine._progress(compiled, ms, cycle, index)
    values = {status.target.target_id: status.achieved for status in statuses}
    if not compiled.single_target:
        values[GROUP] = engine.group_status(compiled, statuses)[0]
    achieved = [key[len("ach:") :] for key in cycle.get("f", ()) if key.startswith("ach:")]
    return values, achieved


def remember_closed_cycle(
    engine: Engine,
    compiled: Compiled,
    ms: dict[str, Any],
    cycle: dict[str, Any],
    window: Window,
    statuses: list[Progress] | None = None,
) -> None:
    """Keep what an enrolled customer achieved in a cycle that closes, for performance conditions."""
    values, achieved = performance_of(engine, compiled, ms, cycle, window.index, statuses)
    if not achieved and not any(values.values()):
        return  # nothing done in the cycle: no condition can hold on it
    history = ms.setdefault("h", {})
    history[str(window.index)] = {
        "s": utc_iso(window.start),
        "e": utc_iso(window.end or window.start),
        "t": {target_id: format(value, "f") for target_id, value in values.items() if value},
        "a": achieved,
    }
    for key in sorted(history, key=int)[:-MAX_CYCLES]:
        del history[key]


def _source_cycles(
    engine: Engine, source: Compiled, ms: dict[str, Any], customer_id: str, now: datetime
) -> Iterator[tuple[int, datetime, datetime, dict[str, Decimal], list[str]]]:
    """(index, start, end, values, achieved) of the customer's closed and open cycles in the source."""
    for key, closed in ms.get("h", {}).items():
        values = {target_id: Decimal(value) for target_id, value in closed["t"].items()}
        yield int(key), datetime.fromisoformat(closed["s"]), datetime.fromisoformat(closed["e"]), values, closed["a"]
    if not engine.is_enrolled(source, ms, customer_id):
        return  # progress kept before an enrolment is nobody's performance yet
    for key, cycle in ms.get("c", {}).items():
        start = datetime.fromisoformat(cycle["s"])
        end = min(datetime.fromisoformat(cycle["e"]), now) if cycle.get("e") else now
        values, achieved = performance_of(engine, source, ms, cycle, int(key))
        yield int(key), start, end, values, achieved


def _in_time_factor(time_factor: TimeFactor, start: datetime, end: datetime, now: datetime) -> bool:
    """Whether a cycle from ``start`` to ``end`` overlaps the time factor's window."""
    after = now - timedelta(days=time_factor.last_days) if time_factor.last_days else time_factor.after
    before = time_factor.before
    return (before is None or start < before) and (after is None or end >= after)


def qualifies(
    engine: Engine, condition: PerformanceCondition, state: dict[str, Any], customer_id: str, now: datetime
) -> bool:
    """Whether a customer meets a performance condition at ``now``."""
    source = engine.registry.milestones.get(condition.milestone_id)
    ms = state.get("m", {}).get(condition.milestone_id)
    if source is None or not ms:
        return False
    key = condition.target_id or source.headline_id
    for index, start, end, values, achieved in _source_cycles(engine, source, ms, customer_id, now):
        if condition.cycle_name is not None and period_name(source.definition, index) != condition.cycle_name:
            continue
        if not _in_time_factor(condition.time_factor, start, end, now):
            continue
        if key in achieved if condition.min_value is None else values.get(key, Decimal(0)) >= condition.min_value:
            return True
    return False


def enrol_by_performance(
    engine: Engine,
    state: dict[str, Any],
    customer_id: str,
    moment: datetime,
    recorded: datetime,
    cause: str,
    result: Result,
) -> None:
    """Enrol the customer into every milestone whose performance condition they now meet, and
    into the milestones those enrolments qualify them for, in turn."""
    candidates = engine.registry.by_performance
    for _ in range(len(candidates)):  # each pass enrols at least one milestone, each at most once
        enrolled_any = False
        for compiled in candidates:
            definition = compiled.definition
            condition = definition.enrolment.performance
            ms = state.get("m", {}).get(definition.milestone_id, {})
            if condition is None or "enr" in ms or moment >= definition.ends_at:
                continue
            if not qualifies(engine, condition, state, customer_id, moment):
                continue
            first_new = len(result.achieved)
            # An internal enrolment, like those of the "specific customers" list: not validated again.
            # The source is of the milestone's organisation (a definition rule), and this state holds
            # only that organisation's milestones, so qualifying means same organisation.
            enrolment = Enrolment.model_construct(
                event_id=f"performance:{definition.milestone_id}",
                customer_id=customer_id,
                event_time=moment,
                milestone_id=definition.milestone_id,
                action="enrol",
                targets=[],
                org_id=definition.org_id,
            )
            engine._enrol(state, enrolment, None, cause, result)  # the cycle running at that moment
            state["m"][definition.milestone_id]["pe"] = utc_iso(moment)
            result.enrolled.append((definition.milestone_id, moment))
            engine._track_achievements(state, definition.org_id, customer_id, recorded, cause, result, first_new)
            enrolled_any = True
        if not enrolled_any:
            return


# ------------------------------------------------------------------ definition rules
def _invalid(detail: str) -> Rejected:
    return Rejected("invalid_definition", detail)


def _cycle_names(definition: MilestoneDefinition) -> set[str] | None:
    """Every cycle name of a milestone, when it has a known number of cycles."""
    count = definition.cycle_count()
    if count is None:
        return None
    if isinstance(definition.cycles, CustomCycles):
        count = len(definition.cycles.periods)
    return {period_name(definition, index) for index in range(1, count + 1)}


def _check_reference(dependent: MilestoneDefinition, source: MilestoneDefinition) -> None:
    condition = dependent.enrolment.performance
    assert condition is not None
    where = f"{dependent.milestone_id}: enrolment.performance"
    if source.org_id != dependent.org_id:
        raise _invalid(f"{where}: milestone {source.milestone_id!r} belongs to another organisation")
    target_ids = {target.target_id for target in source.group.all_targets()}
    if condition.target_id is not None and condition.target_id not in target_ids:
        raise _invalid(
            f"{where}: milestone {source.milestone_id!r} has no target {condition.target_id!r} "
            f"(its targets: {', '.join(sorted(target_ids))})"
        )
    names = _cycle_names(source)
    if condition.cycle_name is not None and names is not None and condition.cycle_name not in names:
        raise _invalid(f"{where}: milestone {source.milestone_id!r} has no cycle named {condition.cycle_name!r}")


def check_performance(registry: Registry, definition: MilestoneDefinition) -> None:
    """The references between performance-enrolled milestones and their sources resolve (checked
    by whichever of the two is defined second, so a source defined later is fine), and no
    milestone depends on its own performance through a chain of conditions."""
    condition = definition.enrolment.performance
    if condition is not None:
        source = registry.milestones.get(condition.milestone_id)
        if source is not None:
            _check_reference(definition, source.definition)
        chain = [definition.milestone_id]
        following: str | None = condition.milestone_id
        while following is not None and following not in chain:
            chain.append(following)
            known = registry.milestones.get(following)
            upstream = known.definition.enrolment.performance if known is not None else None
            following = upstream.milestone_id if upstream is not None else None
        if following == definition.milestone_id:
            raise _invalid(
                f"{definition.milestone_id}: enrolment.performance makes a cycle of conditions "
                f"(each enrols by performance in the next): "
                f"{' -> '.join([*chain, following])}"
            )
    for compiled in registry.milestones.values():
        dependent = compiled.definition
        upstream = dependent.enrolment.performance
        if (
            upstream is not None
            and upstream.milestone_id == definition.milestone_id
            and dependent.milestone_id != definition.milestone_id
        ):
            _check_reference(dependent, definition)
