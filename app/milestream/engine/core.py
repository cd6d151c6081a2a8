"""The milestone engine: a pure function of (definitions, customer state, event).

No I/O and no clock: the caller passes the event and the time it was recorded,
and gets back the output events; the customer's state (a JSON-able dict) is
updated in place. The Faust agents, the in-process topology driver and the
simulator all call this same code.

Customer state layout (short keys: it is stored once per customer, under the customer's id in
the store's customer namespace; the pipeline keeps outboxes and the close index in namespaces
of their own, state/keys.py)::

    {"m": {milestone_id: {
        "enr": true|false,          # explicit enrolment (specific/none methods)
        "ena": iso,                 # when the customer enrolled
        "fr": iso,                  # start of the cycle enrolled into: nothing before it counts
        "ib": {target_id: "dec"},   # initial balance waiting for the customer's first rolling cycle
        "ov": [overrides],          # per-customer (and per-cycle) target values
        "an": iso,                  # anchor of rolling / till-achieved cycles
        "tc": int,                  # current till-achieved cycle
        "cl": int,                  # highest closed cycle: a closed cycle stays closed
        "h": {"<cycle>": {...}},    # what was achieved in closed cycles (performance_enrolment.py)
        "pe": iso,                  # when enrolled by performance in another milestone
        "adj": {"<cycle>": {target_id: "dec"}},  # returns carried into a cycle not open yet
        "c": {"<cycle>": {          # progress per open cycle
            "s": iso, "e": iso|null,
            "i": 1 or entry id,     # in the close index (the pipeline stores its entry's id)
            "t": {target_id: {"v": "dec", "d": [days], "x": {day: "dec"}, "k": [cycles],
                              "b": "dec"}},  # b: the initial balance the customer started with
            "f": [fired triggers],  # achievement / sub-target keys already emitted
        }},
     }},
     "b": {bill_id: {"t": iso, "g": "dec", "m": {milestone_id: [cycle, {target_id: "dec"}]}, "r": [return ids]}},
     "xb": [expired bill ids]}

Everything about a milestone lives under its own id, so a milestone whose start is in
the past can be filled in later by replaying the input topics into that milestone alone
(its own state, its own applied-offset mark) without touching the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any, NamedTuple, cast

from ..schemas.base import utc_iso
from ..schemas.codec import Rejected
from ..schemas.definitions import (
    WHOLE_NUMBER_KPIS,
    Activity,
    CalendarCycles,
    CustomCycles,
    Kpi,
    RollingCycles,
    SubTarget,
    Target,
    TillAchievedCycles,
)
from ..schemas.inputs import Enrolment, InputEvent, Return, Transaction
from .cycles import (
    Window,
    fixed_window_at,
    fixed_window_from,
    named_window,
    next_window,
    period_name,
    rolling_window_at,
)
from .ids import milestone_event_id
from .measures import ZERO, Accumulation, TargetPlan, activity_of, measure
from .performance_enrolment import enrol_by_performance, remember_closed_cycle
from .registry import GROUP, Compiled, Registry
from .returns import BillBook, UnmatchedReturn


def _dec(text: str | None) -> Decimal:
    return Decimal(text) if text else ZERO


def _fmt(value: Decimal) -> str:
    return format(value, "f")


class Progress(NamedTuple):
    """One target's standing in a cycle."""

    target: Target
    achieved: Decimal
    defined: Decimal
    reached: bool
    has_target: bool
    overall: bool
    initial_balance: Decimal = ZERO  # part of ``achieved``: what the customer was enrolled with


@dataclass
class LateEvent:
    """An event that arrived after its cycle's buffer had elapsed: recorded, not counted."""

    milestone_id: str
    customer_id: str
    event_id: str
    cycle: int
    event_time: datetime
    recorded_at: datetime
    cycle_end: datetime


class Result:
    """What applying one event did. A plain class, not a dataclass: compiled, a dataclass's
    ``__init__`` stays interpreted, and a Result is made for every record."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.late: list[LateEvent] = []
        # Returns that could not be matched to a retained bill: recorded, not counted.
        self.unmatched: list[UnmatchedReturn] = []
        # (due time, milestone id, cycle index) of each cycle this customer now needs a
        # close for: the caller indexes it so the close happens on schedule.
        self.opened: list[tuple[datetime, str, int]] = []
        # What a transaction counted towards, per milestone (kept with the bill for later returns).
        self.counted: dict[str, list[Any]] = {}
        # (milestone id, cycle, moment) of each milestone reached by this event: the
        # "milestone achieved" activity of milestones that track it.
        self.achieved: list[tuple[str, int, datetime]] = []
        # (milestone id, moment) of each enrolment this customer's performance elsewhere caused.
        self.enrolled: list[tuple[str, datetime]] = []


@dataclass(frozen=True)
class MilestoneAchieved:
    """The internal activity "customer achieved milestone X" (not a wire event)."""

    customer_id: str
    milestone_id: str
    cycle: int
    event_time: datetime
    event_id: str
    type: str = "milestone_achieved"
    recorded_at: datetime | None = None


# Levels of "milestone achieved" tracking followed from one event (daily → weekly → quarterly is 2).
MAX_TRACKING_DEPTH = 5


class Engine:
    """Applies customer events to customer state under a registry of definitions."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.bills = BillBook(registry)

    # ------------------------------------------------------------------ events
    def apply(self, state: dict[str, Any], event: InputEvent, recorded_at: datetime, cause: str) -> Result:
        """Apply one customer event; ``recorded_at`` is when it was recorded upstream.

        Raises ``Rejected`` (before changing the state) for an enrolment the milestone cannot take."""
        enrolled_window = self._check_enrolment(event) if isinstance(event, Enrolment) else None
        result = Result()
        self._join_open_milestones(state, event.org_id, event.event_time, result)
        recorded = event.recorded_at or recorded_at
        if isinstance(event, Enrolment):
            self._enrol(state, event, enrolled_window, cause, result)
            enrol_by_performance(self, state, event.customer_id, event.event_time, recorded, cause, result)
            return result
        if isinstance(event, Return):
            self.bills.apply_return(self, state, event, result)
        activity = activity_of(event)
        if activity is None:
            return result
        for compiled in self.registry.listening(activity, event.org_id):
            self._apply_to_milestone(state, compiled, event, recorded, cause, result, activity)
        if result.counted and isinstance(event, Transaction):
            self.bills.remember(state, event, result.counted)
        if result.achieved:
            self._track_achievements(state, event.org_id, event.customer_id, recorded, cause, result)
        if self.registry.by_performance:
            enrol_by_performance(self, state, event.customer_id, event.event_time, recorded, cause, result)
        return result

    def _track_achievements(
        self,
        state: dict[str, Any],
        org_id: str,
        customer_id: str,
        recorded: datetime,
        cause: str,
        result: Result,
        done: int = 0,
    ) -> None:
        """Feed each milestone reached (from ``result.achieved[done]`` on) to the milestones that
        count its achievements, level by level."""
        for _ in range(MAX_TRACKING_DEPTH):
            reached, done = result.achieved[done:], len(result.achieved)
            if not reached:
                return
            trackers = self.registry.listening(Activity.MILESTONE_ACHIEVED, org_id)
            for milestone_id, cycle, moment in reached:
                internal = MilestoneAchieved(customer_id, milestone_id, cycle, moment, f"{milestone_id}#{cycle}")
                for compiled in trackers:
                    if any(t.source_milestone_id == milestone_id for t in compiled.targets):
                        self._apply_to_milestone(
                            state, compiled, internal, recorded, cause, result, Activity.MILESTONE_ACHIEVED
                        )

    # -------------------------------------------------------------- enrolment
    def _join_open_milestones(self, state: dict[str, Any], org_id: str, moment: datetime, result: Result) -> None:
        """A customer seen for the first time since an "all customers" milestone of their
        organisation started joins it: its current cycle opens (and will close) even without activity in it."""
        milestones = state.setdefault("m", {})
        for compiled in self.registry.open_to_all:
            if compiled.definition.org_id == org_id and compiled.definition.milestone_id not in milestones:
                ms: dict[str, Any] = {"enr": True}  # kept if the enrolment method changes later
                if self._open_current_cycle(compiled, ms, moment, result):
                    milestones[compiled.definition.milestone_id] = ms

    def _check_enrolment(self, event: Enrolment) -> Window | None:
        """The cycle an enrolment names, if any; ``Rejected`` (``invalid_enrolment``) for a cycle or an
        initial balance the milestone does not have. Unchecked while the milestone is unknown, except a cycle."""
        if event.action == "unenrol":
            return None
        compiled = self.registry.milestones.get(event.milestone_id)
        mid = event.milestone_id
        if compiled is not None:
            targets = {t.target_id for t in compiled.targets}
            unknown = sorted(set(event.initial_balance) - targets)
            if unknown:
                raise Rejected(
                    "invalid_enrolment",
                    f"initial_balance: milestone {mid!r} has no target "
                    f"{unknown[0]!r} (its targets: {', '.join(sorted(targets))})",
                )
        if event.cycle is None:
            return None
        if compiled is None:
            raise Rejected("invalid_enrolment", f"cycle {event.cycle!r}: milestone {mid!r} is not defined")
        definition = compiled.definition
        window = named_window(definition, event.cycle)
        if window is None:
            raise Rejected(
                "invalid_enrolment",
                f"milestone {mid!r} has no cycle {event.cycle!r} (the name of a calendar or custom cycle, or #<n>)",
            )
        if window.end is not None and window.end <= event.event_time:
            raise Rejected(
                "invalid_enrolment",
                f"cycle {event.cycle!r} of {mid!r} ended at {utc_iso(window.end)}, before the enrolment",
            )
        if window.start < definition.starts_at:
            window = Window(window.index, window.name, definition.starts_at, window.end)
        return window

    def _open_current_cycle(self, compiled: Compiled, ms: dict[str, Any], moment: datetime, result: Result) -> bool:
        """Open (and index) the fixed cycle running at ``moment``, or the first one if the
        milestone has not started yet. Rolling cycles open with the first activity."""
        definition = compiled.definition
        if not isinstance(definition.cycles, (CalendarCycles, CustomCycles)):
            return False
        moment = max(moment, definition.starts_at)
        if moment >= definition.ends_at:
            return False
        window = self._window_for(compiled, ms, moment) or fixed_window_from(definition, moment)
        if window is None or window.index <= ms.get("cl", 0):
            return False
        self.open_cycle(compiled, ms, window, result, indexed=True)
        return True

    def _enrol(
        self, state: dict[str, Any], event: Enrolment, window: Window | None, cause: str, result: Result
    ) -> None:
        if not self.registry.in_org(event.milestone_id, event.org_id):
            return  # another organisation's milestone (the pipeline dead-letters such an enrolment)
        ms = state.setdefault("m", {}).setdefault(event.milestone_id, {})
        if event.action == "unenrol":
            ms["enr"] = False  # open cycles are dropped without a close event
            return
        compiled = self.registry.milestones.get(event.milestone_id)
        was_enrolled = compiled is not None and self.is_enrolled(compiled, ms, event.customer_id)
        unenrolled_before = ms.get("enr") is False
        if not ms.get("enr"):
            ms["ena"] = utc_iso(event.event_time)
        ms["enr"] = True
        if event.targets:
            ms["ov"] = [o.model_dump(mode="json", exclude_none=True) for o in event.targets]
        if not was_enrolled:
            ms.pop("fr", None)
            if window is not None:
                ms["fr"] = utc_iso(window.start)
        if compiled is None or not compiled.definition.active:
            if event.initial_balance:
                ms["ib"] = {t: _fmt(v) for t, v in event.initial_balance.items()}
            return
        if not was_enrolled:
            starts = window.start if window is not None else event.event_time
            # Progress kept while not enrolled counts only for the cycle running at the enrolment, and not at
            # all when activity is tracked from the enrolment date. Cycles opened while enrolled before resume,
            # unless this re-enrolment resets them (emptied: still closed, an award made stays made).
            # Nothing before a cycle enrolled into is kept.
            reset = unenrolled_before and event.reenrol == "reset"
            kept = {}
            for k, c in ms.get("c", {}).items():
                if window is not None and int(k) < window.index:
                    continue
                if c.get("i"):
                    kept[k] = {**c, "t": {}} if reset else c
                elif not (
                    compiled.settings.track_from_enrolment
                    or reset
                    or (c.get("e") and datetime.fromisoformat(c["e"]) <= starts)
                ):
                    kept[k] = c
            ms["c"] = kept
        if window is not None:
            self.open_cycle(compiled, ms, window, result, indexed=True)
        else:
            self._open_current_cycle(compiled, ms, event.event_time, result)
        self._set_initial_balance(compiled, ms, event, window)
        definition = compiled.definition
        for key in sorted(ms.get("c", {}), key=int):
            cycle = ms["c"][key]
            cycle_window = self.cycle_window(compiled, int(key), cycle)
            self.open_cycle(compiled, ms, cycle_window, result, indexed=True)
            counts_now = (not was_enrolled or event.initial_balance) and cycle_window.start <= event.event_time
            if counts_now and cycle["t"] and definition.starts_at <= event.event_time:
                # Mid-cycle enrolment counts the activity already in the cycle (the spec's default).
                self._evaluate(compiled, ms, cycle, cycle_window, event.customer_id, event.event_time, cause, result)

    def _set_initial_balance(
        self, compiled: Compiled, ms: dict[str, Any], event: Enrolment, window: Window | None
    ) -> None:
        """Put the enrolment's initial balance in the cycle it enrols into (the named one, else the
        current one); a milestone whose cycles start per customer keeps it for its next cycle."""
        ms.pop("ib", None)
        if not event.initial_balance:
            return
        balance = {t: _fmt(v) for t, v in event.initial_balance.items()}
        cycle = None
        if window is not None:
            cycle = ms["c"].get(str(window.index))
        elif isinstance(compiled.definition.cycles, (CalendarCycles, CustomCycles)):
            current = fixed_window_from(compiled.definition, max(event.event_time, compiled.definition.starts_at))
            cycle = ms.get("c", {}).get(str(current.index)) if current is not None else None
        else:
            running = [
                c
                for c in ms.get("c", {}).values()
                if c.get("e") is None or datetime.fromisoformat(c["e"]) > event.event_time
            ]
            cycle = running[0] if running else None
        if cycle is None:
            ms["ib"] = balance
            return
        for target_id, value in balance.items():
            cycle["t"].setdefault(target_id, {})["b"] = value

    def is_enrolled(self, compiled: Compiled, ms: dict[str, Any], customer_id: str) -> bool:
        explicit = ms.get("enr")
        if explicit is not None:
            return bool(explicit)
        enrolment = compiled.definition.enrolment
        if enrolment.method == "all":
            return True
        return enrolment.method == "specific" and customer_id in compiled.specific_customers

    @staticmethod
    def tracks_before_enrolment(compiled: Compiled) -> bool:
        """Whether activity of a customer not (yet) enrolled is kept, to count if they enrol mid-cycle."""
        return compiled.definition.enrolment.method != "all" and not compiled.settings.track_from_enrolment

    # ------------------------------------------------------------------ cycles
    def open_cycle(
        self, compiled: Compiled, ms: dict[str, Any], window: Window, result: Result, *, indexed: bool
    ) -> dict[str, Any]:
        """The customer's progress in a cycle, created on first use; ``indexed`` asks for its close."""
        cycles = ms.setdefault("c", {})
        key = str(window.index)
        cycle: dict[str, Any] | None = cycles.get(key)
        if cycle is None:
            text = _window_text(compiled, window)
            opened: dict[str, Any] = {
                "s": text["start"],
                "e": text["end"],
                "t": {},
                "f": [],
            }
            cycle = cycles[key] = opened
            targets = compiled.target_ids
            for target_id, value in ms.pop("ib", {}).items():  # the balance enrolled with
                if target_id in targets:  # checked at enrolment unless the milestone was not defined yet
                    cycle["t"].setdefault(target_id, {})["b"] = value
            carried = ms.get("adj", {}).pop(key, None)
            if carried:  # returns carried into this cycle start it below zero
                for target_id, value in carried.items():
                    cycle["t"].setdefault(target_id, {})["v"] = value
            if not ms.get("adj", True):
                del ms["adj"]
        if indexed and window.end is not None and not cycle.get("i"):
            cycle["i"] = 1
            due = window.end + compiled.buffer
            result.opened.append((due, compiled.definition.milestone_id, window.index))
        return cycle

    def cycle_window(self, compiled: Compiled, index: int, cycle: dict[str, Any]) -> Window:
        end = cycle.get("e")
        key = (index, cycle["s"], end)
        window = compiled.stored_windows.get(key)
        if window is None:
            if len(compiled.stored_windows) > 4096:
                compiled.stored_windows.clear()  # rolling and till-achieved cycles differ per customer
            window = compiled.stored_windows[key] = Window(
                index,
                period_name(compiled.definition, index),
                datetime.fromisoformat(cycle["s"]),
                datetime.fromisoformat(end) if end else None,
            )
        return window

    def next_cycle_window(self, compiled: Compiled, window: Window, anchor: datetime | None) -> Window | None:
        """The cycle after ``window``; for calendar and custom cycles computed once per index."""
        if not compiled.fixed_cycles:
            return next_window(compiled.definition, window, anchor)
        if window.index not in compiled.following:
            compiled.following[window.index] = next_window(compiled.definition, window, anchor)
        return compiled.following[window.index]

    def _apply_to_milestone(
        self,
        state: dict[str, Any],
        compiled: Compiled,
        event: InputEvent | MilestoneAchieved,
        recorded: datetime,
        cause: str,
        result: Result,
        activity: Activity,
    ) -> None:
        definition = compiled.definition
        moment = event.event_time
        if not definition.active or not (definition.starts_at <= moment < definition.ends_at):
            return
        milestones = state.setdefault("m", {})
        ms = milestones.get(definition.milestone_id, {})
        enrolled = self.is_enrolled(compiled, ms, event.customer_id)
        if not enrolled and not self.tracks_before_enrolment(compiled):
            return
        if (
            enrolled
            and compiled.settings.track_from_enrolment
            and ms.get("ena")
            and moment < datetime.fromisoformat(ms["ena"])
        ):
            return
        if enrolled and ms.get("fr") and moment < datetime.fromisoformat(ms["fr"]):
            return  # enrolled into a later cycle: nothing before it counts
        # An internal milestone-achieved event carries the fields measure() reads for its activity.
        measured = cast(InputEvent, event)
        contributions = [
            (plan, value) for plan in compiled.plans if (value := measure(plan, measured, activity)) is not None
        ]
        if not contributions:
            return
        local_day = moment.astimezone(compiled.zone).date()
        window = self._window_for(compiled, ms, moment, local_day)
        if window is None:
            return
        if window.end is not None:
            deadline = window.end + compiled.buffer
            # Late: recorded after the cycle's buffer, or the cycle was already closed.
            if recorded >= deadline or window.index <= ms.get("cl", 0):
                result.late.append(
                    LateEvent(
                        definition.milestone_id,
                        event.customer_id,
                        event.event_id,
                        window.index,
                        moment,
                        recorded,
                        window.end,
                    )
                )
                return
        milestones[definition.milestone_id] = ms
        if enrolled and "enr" not in ms:
            ms["enr"] = True  # enrolled by the method ("all", or on the list): kept if the method changes
        if not enrolled:
            # Kept only to count if the customer enrols during this cycle: no older cycle is needed.
            for key in [k for k in ms.get("c", {}) if k != str(window.index)]:
                del ms["c"][key]
        cycle = self.open_cycle(compiled, ms, window, result, indexed=enrolled)
        day = local_day.isoformat() if compiled.counts_days else ""  # only per-day KPIs read it
        progress = cycle["t"]
        for plan, value in contributions:
            _accumulate(progress.setdefault(plan.target.target_id, {}), plan.accumulation, value, day)
        if compiled.adjusts_returns and isinstance(event, Transaction):
            self.bills.note_contribution(compiled, window.index, contributions, result.counted)
        if enrolled:
            self._evaluate(compiled, ms, cycle, window, event.customer_id, moment, cause, result)

    def _window_for(
        self, compiled: Compiled, ms: dict[str, Any], moment: datetime, local_day: date | None = None
    ) -> Window | None:
        """The customer's cycle at ``moment`` (``local_day``: its date in the milestone's timezone, if known)."""
        definition = compiled.definition
        if compiled.fixed_cycles:
            # Fixed windows change at local midnights: cache them by local date.
            if local_day is None:
                local_day = moment.astimezone(compiled.zone).date()
            windows = compiled.windows
            if local_day in windows:
                return windows[local_day]
            window = fixed_window_at(definition, moment)
            if window is not None and window.start < definition.starts_at:
                # A first cycle created mid-period only tracks from the milestone start.
                window = Window(window.index, window.name, definition.starts_at, window.end)
            if len(compiled.windows) > 4096:
                compiled.windows.clear()
            compiled.windows[local_day] = window
            return window
        cycles = definition.cycles
        if isinstance(cycles, RollingCycles):
            if "an" not in ms:
                ms["an"] = utc_iso(moment)
            return rolling_window_at(definition, datetime.fromisoformat(ms["an"]), moment)
        assert isinstance(cycles, TillAchievedCycles)
        index = ms.get("tc", 1)
        if cycles.max_cycles is not None and index > cycles.max_cycles:
            return None
        if "an" not in ms:
            ms["an"] = utc_iso(moment)
        return Window(index, period_name(definition, index), datetime.fromisoformat(ms["an"]), None)

    # ------------------------------------------------------------- evaluation
    def defined_value(self, compiled: Compiled, ms: dict[str, Any], target: Target, cycle_index: int) -> Decimal:
        """The customer's target for a cycle: a per-cycle override, a per-customer
        override, the definition's per-cycle value, or its single value."""
        overrides = {o.get("cycle"): o for o in ms.get("ov", ()) if o["target_id"] == target.target_id}
        override = overrides.get(cycle_index) or overrides.get(None)
        if override is not None:
            return Decimal(override["value"])
        return _definition_value(target, cycle_index)

    def has_defined_value(self, ms: dict[str, Any], target: Target, cycle_index: int) -> bool:
        """Whether the customer has a target for the cycle at all: on a milestone with a
        different target for each customer, one enrolled without a value has none."""
        if target.value is not None or target.values_per_cycle is not None:
            return True
        return any(
            o["target_id"] == target.target_id and o.get("cycle") in (None, cycle_index) for o in ms.get("ov", ())
        )

    def _progress(self, compiled: Compiled, ms: dict[str, Any], cycle: dict[str, Any], index: int) -> list[Progress]:
        """Where each target of the group stands in a cycle (decimals; formatted only for outputs)."""
        progress = []
        overall = compiled.definition.group.overall
        targets = cycle["t"]
        own_values = bool(ms.get("ov"))
        for plan in compiled.plans:
            target = plan.target
            standing = targets.get(target.target_id, _NO_PROGRESS)
            initial_balance = _dec(standing.get("b"))
            achieved_value = _counted(standing, plan.accumulation) + initial_balance  # as progress_value()
            if own_values:
                defined = self.defined_value(compiled, ms, target, index)
                has_target = self.has_defined_value(ms, target, index)
            else:  # the definition's value: what defined_value and has_defined_value find without overrides
                defined = _definition_value(target, index)
                has_target = target.value is not None or target.values_per_cycle is not None
            progress.append(
                Progress(
                    target,
                    achieved_value,
                    defined,
                    has_target and achieved_value >= defined,
                    has_target,
                    target is overall,
                    initial_balance,
                )
            )
        return progress

    def group_status(self, compiled: Compiled, progress: list[Progress]) -> tuple[Decimal, Decimal, bool]:
        """(achieved, defined, reached) of the group: targets met vs targets required."""
        met = _targets_met(progress)
        required = compiled.required_targets
        return Decimal(met), Decimal(required), met >= required

    def _evaluate(
        self,
        compiled: Compiled,
        ms: dict[str, Any],
        cycle: dict[str, Any],
        window: Window,
        customer_id: str,
        moment: datetime,
        cause: str,
        result: Result,
    ) -> None:
        definition = compiled.definition
        statuses = self._progress(compiled, ms, cycle, window.index)
        fired: list[str] = cycle["f"]
        headline_key = compiled.headline_key
        was_reached = headline_key in fired
        immediate = compiled.settings.award_when_target_achieved
        emit = result.outputs.append if immediate else (lambda _event: None)
        own_values = bool(ms.get("ov"))
        for plan, status in zip(compiled.plans, statuses):
            if not status.has_target:
                continue  # no target for this customer: nothing to achieve
            target, achieved_value, defined = status.target, status.achieved, status.defined
            if plan.sub_targets:
                if own_values:
                    sub_values = tuple(self.sub_target_value(ms, target, s.sub, defined) for s in plan.sub_targets)
                else:
                    sub_values = self._definition_sub_target_values(compiled, plan, window.index, defined)
                for sub_plan, sub_value in zip(plan.sub_targets, sub_values):
                    key = sub_plan.fired_key
                    if key not in fired and achieved_value >= sub_value:
                        fired.append(key)
                        emit(
                            self._event(
                                compiled,
                                customer_id,
                                window,
                                "sub_target",
                                target.target_id,
                                target.name,
                                achieved_value,
                                defined,
                                statuses,
                                moment,
                                cause,
                                trigger=sub_plan.trigger,
                                triggers=[sub_plan.sub.name],
                                sub_value=sub_value,
                            )
                        )
            key = plan.achieved_key
            if status.reached and key not in fired:
                fired.append(key)
                emit(
                    self._event(
                        compiled,
                        customer_id,
                        window,
                        "achievement",
                        target.target_id,
                        target.name,
                        achieved_value,
                        defined,
                        statuses,
                        moment,
                        cause,
                        trigger="achievement",
                        triggers=[target.name],
                    )
                )
        reached = _targets_met(statuses) >= compiled.required_targets
        if not compiled.single_target and reached and _GROUP_KEY not in fired:
            fired.append(_GROUP_KEY)
            group_achieved, group_defined, _ = self.group_status(compiled, statuses)
            emit(
                self._event(
                    compiled,
                    customer_id,
                    window,
                    "achievement",
                    GROUP,
                    definition.name,
                    group_achieved,
                    group_defined,
                    statuses,
                    moment,
                    cause,
                    trigger="achievement",
                    triggers=[definition.name],
                )
            )
        if not was_reached and headline_key in fired:
            result.achieved.append((definition.milestone_id, window.index, moment))
        if isinstance(definition.cycles, TillAchievedCycles) and reached:
            # The cycle ends at achievement and the next one starts at once; the
            # close event reports that end and the record that caused it.
            closed = Window(window.index, window.name, window.start, moment)
            result.outputs.append(self.close_event(compiled, ms, cycle, closed, customer_id, moment, cause))
            remember_closed_cycle(self, compiled, ms, cycle, closed)
            del ms["c"][str(window.index)]
            ms["tc"] = window.index + 1
            ms["an"] = utc_iso(moment)

    @staticmethod
    def _definition_sub_target_values(
        compiled: Compiled, plan: TargetPlan, cycle_index: int, defined: Decimal
    ) -> tuple[Decimal, ...]:
        """The sub-target values of a customer without values of their own (``defined``: the
        definition's target for the cycle), computed once per target and cycle."""
        target = plan.target
        key = (target.target_id, cycle_index if target.values_per_cycle is not None else 0)
        values = compiled.sub_target_values.get(key)
        if values is None:
            values = compiled.sub_target_values[key] = tuple(
                percentage_of(defined, s.sub.value, target.kpi) if s.sub.criterion == "percentage" else s.sub.value
                for s in plan.sub_targets
            )
        return values

    def sub_target_value(self, ms: dict[str, Any], target: Target, sub: SubTarget, defined: Decimal) -> Decimal:
        """A sub-target's value for the customer: their own value for it, else its absolute
        value, else its percentage of the customer's target (``defined``) for the cycle."""
        for override in ms.get("ov", ()):
            if override["target_id"] == target.target_id and sub.name in override.get("sub_targets", {}):
                return Decimal(override["sub_targets"][sub.name])
        if sub.criterion == "percentage":
            return percentage_of(defined, sub.value, target.kpi)
        return sub.value

    # ----------------------------------------------------------------- outputs
    def deferred_sub_target_events(
        self, compiled: Compiled, ms: dict[str, Any], cycle: dict[str, Any], window: Window, customer_id: str
    ) -> list[dict[str, Any]]:
        """Sub-target events held back in end-of-cycle award mode, emitted at the cycle's end."""
        statuses = self._progress(compiled, ms, cycle, window.index)
        events = []
        for status in statuses:
            for sub in status.target.sub_targets:
                if f"sub:{status.target.target_id}:{sub.name}" in cycle["f"]:
                    events.append(
                        self._event(
                            compiled,
                            customer_id,
                            window,
                            "sub_target",
                            status.target.target_id,
                            status.target.name,
                            status.achieved,
                            status.defined,
                            statuses,
                            window.end or window.start,
                            "cycle-end",
                            trigger=f"sub_target:{sub.name}",
                            triggers=[sub.name],
                            sub_value=self.sub_target_value(ms, status.target, sub, status.defined),
                        )
                    )
        return events

    def close_event(
        self,
        compiled: Compiled,
        ms: dict[str, Any],
        cycle: dict[str, Any] | None,
        window: Window,
        customer_id: str,
        occurred_at: datetime,
        cause: str,
        statuses: list[Progress] | None = None,
    ) -> dict[str, Any]:
        """The cycle-close event for one customer (achieved or not); ``statuses``: the cycle's
        progress, if the caller has it."""
        cycle = cycle or {"t": {}, "f": []}
        if statuses is None:
            statuses = self._progress(compiled, ms, cycle, window.index)
        if compiled.single_target:
            achieved_value, defined = statuses[0].achieved, statuses[0].defined
        else:
            achieved_value, defined, _ = self.group_status(compiled, statuses)
        return self._event(
            compiled,
            customer_id,
            window,
            "cycle_close",
            compiled.headline_id,
            compiled.headline_name,
            achieved_value,
            defined,
            statuses,
            occurred_at,
            cause,
            trigger="cycle_close",
            triggers=[],
        )

    def _event(
        self,
        compiled: Compiled,
        customer_id: str,
        window: Window,
        kind: str,
        target_id: str,
        target_name: str,
        achieved_value: Decimal,
        defined: Decimal,
        statuses: list[Progress],
        occurred_at: datetime,
        cause: str,
        *,
        trigger: str,
        triggers: Iterable[str],
        sub_value: Decimal | None = None,
    ) -> dict[str, Any]:
        definition = compiled.definition
        return {
            "type": "milestone_event",
            "schema_version": 1,
            "event_id": milestone_event_id(
                definition.milestone_id, target_id, customer_id, window.index, trigger, definition.org_id
            ),
            "kind": kind,
            "customer_id": customer_id,
            "org_id": definition.org_id,
            "milestone_id": definition.milestone_id,
            "milestone_name": definition.name,
            "till_code": definition.till_code,
            "target_id": target_id,
            "target_name": target_name,
            "cycle": {"index": window.index, "name": window.name, **_window_text(compiled, window)},
            "achieved_value": _fmt(achieved_value),
            "defined_value": _fmt(defined),
            "gap": _fmt(defined - achieved_value),
            "achieved": achieved_value >= defined,
            "is_target_achieved_event": kind == "achievement",
            "milestone_value_defined": _fmt(sub_value) if sub_value is not None else None,
            "trigger_names": list(triggers),
            "targets": [_target_status(p) for p in statuses],
            "occurred_at": utc_iso(occurred_at),
            "cause": cause,
        }


WHOLE_UNIT = Decimal(1)
AMOUNT_UNIT = Decimal("0.000001")  # the six decimal places of amounts (schemas/base.py)


def percentage_of(defined: Decimal, percent: Decimal, kpi: Kpi) -> Decimal:
    """``percent`` % of a target, rounded up to the KPI's unit: whole units for counts, days and
    quantities (75 % of 10 is 8), the amounts' precision otherwise, so it is never below the percentage."""
    unit = WHOLE_UNIT if kpi in WHOLE_NUMBER_KPIS else AMOUNT_UNIT
    exact = defined * percent / 100
    return (exact / unit).to_integral_value(rounding=ROUND_CEILING) * unit


_GROUP_KEY = f"ach:{GROUP}"
_NO_PROGRESS: dict[str, Any] = {}  # read only: the standing of a target with nothing counted yet


def _definition_value(target: Target, cycle_index: int) -> Decimal:
    """The definition's target for a cycle (its per-cycle value, or its single value)."""
    if target.values_per_cycle is not None:
        return target.values_per_cycle[cycle_index - 1]
    return target.value if target.value is not None else ZERO


def _window_text(compiled: Compiled, window: Window) -> dict[str, str | None]:
    """A cycle's start and end as outputs give them, formatted once per window."""
    text = compiled.window_text.get(window)
    if text is None:
        if len(compiled.window_text) > 4096:
            compiled.window_text.clear()  # till-achieved cycles end at each achievement: keep the cache small
        text = compiled.window_text[window] = {
            "start": utc_iso(window.start),
            "end": utc_iso(window.end) if window.end else None,
        }
    return text


def _targets_met(progress: list[Progress]) -> int:
    return sum(1 for p in progress if p.reached and not p.overall)


def _target_status(p: Progress) -> dict[str, Any]:
    status = {
        "target_id": p.target.target_id,
        "target_name": p.target.name,
        "achieved_value": _fmt(p.achieved),
        "defined_value": _fmt(p.defined),
        "gap": _fmt(p.defined - p.achieved),
        "achieved": p.reached,
        "overall": p.overall,
    }
    if p.initial_balance:
        status["initial_balance"] = _fmt(p.initial_balance)
    return status


def _accumulate(progress: dict[str, Any], mode: Accumulation, value: Decimal, day: str) -> None:
    if mode is Accumulation.SUM:
        progress["v"] = _fmt(_dec(progress.get("v")) + value)
    elif mode is Accumulation.DAYS:
        days = progress.setdefault("d", [])
        if day not in days:
            days.append(day)
            days.sort()
    elif mode is Accumulation.STREAK:
        cycles = progress.setdefault("k", [])
        if int(value) not in cycles:
            cycles.append(int(value))
            cycles.sort()
    else:
        highs = progress.setdefault("x", {})
        if value > _dec(highs.get(day)):
            highs[day] = _fmt(value)


def progress_value(progress: dict[str, Any], mode: Accumulation) -> Decimal:
    """A target's progress in a cycle: what was counted plus the initial balance the customer started with."""
    return _counted(progress, mode) + _dec(progress.get("b"))


def _counted(progress: dict[str, Any], mode: Accumulation) -> Decimal:
    if mode is Accumulation.SUM:
        return _dec(progress.get("v"))
    if mode is Accumulation.DAYS:
        return Decimal(len(progress.get("d", ())))
    if mode is Accumulation.STREAK:
        return Decimal(longest_run(progress.get("k", ())))
    return sum((Decimal(v) for v in progress.get("x", {}).values()), ZERO)


def longest_run(indexes: Iterable[int]) -> int:
    """Length of the longest run of consecutive numbers in a sorted sequence."""
    best = run = 0
    previous = None
    for index in indexes:
        run = run + 1 if previous is not None and index == previous + 1 else 1
        best, previous = max(best, run), index
    return best
