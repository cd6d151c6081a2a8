"""The definitions and settings an engine works with, compiled once for the hot path."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from ..schemas.definitions import CalendarCycles, CustomCycles, MilestoneDefinition, OrganisationSettings, Target
from .cycles import Window
from .measures import Accumulation, TargetPlan

GROUP = "group"

# Registry versions are unique within a process and differ across processes: state written
# by another worker (or by this one before a restart) never looks checked against this registry.
_VERSIONS = itertools.count(1)
_PROCESS = f"{os.getpid():x}.{os.urandom(3).hex()}"


@dataclass(frozen=True)
class MilestoneSettings:
    """Organisation settings with a milestone's overrides applied."""

    adjust_on_bill_return: bool
    line_item_return: str
    buffer_days: int
    track_from_enrolment: bool
    award_when_target_achieved: bool
    leaderboard: bool = False

    @classmethod
    def resolve(cls, org: OrganisationSettings, definition: MilestoneDefinition) -> MilestoneSettings:
        values = {name: getattr(org, name) for name in cls.__dataclass_fields__}
        values.update(definition.settings.model_dump(exclude_none=True))
        return cls(**values)


@dataclass
class Compiled:
    """A definition plus what the engine derives from it once, not per event."""

    definition: MilestoneDefinition
    settings: MilestoneSettings
    activities: frozenset[str]
    headline_id: str
    headline_name: str
    targets: tuple[Target, ...]  # the group's targets, then the overall target
    specific_customers: frozenset[str]  # the "specific customers" enrolment list, for O(1) look-ups
    plans: tuple[TargetPlan, ...]  # ``targets``, each with its compiled filter, scope sets and keys
    zone: ZoneInfo  # the definition's timezone
    fixed_cycles: bool  # calendar or custom cycles: the same windows for every customer
    required_targets: int  # targets of the group to meet for the group to be reached
    target_ids: frozenset[str]
    headline_key: str  # the headline's key in a cycle's fired list
    buffer: timedelta  # the buffer days after a cycle's end in which late data still counts
    counts_days: bool  # a target accumulates per local day (days of activity, daily maxima)
    adjusts_returns: bool  # returns adjust its progress: the bills it counted are kept
    windows: dict[date, Window | None] = field(default_factory=dict)  # local date -> fixed-calendar Window (a cache)
    window_text: dict[Window, dict[str, str | None]] = field(default_factory=dict)  # a cycle's times in outputs
    # A stored cycle's window, by (index, start text, end text): each close reads one (a cache).
    stored_windows: dict[tuple[int, str, str | None], Window] = field(default_factory=dict)
    following: dict[int, Window | None] = field(default_factory=dict)  # fixed cycles: the window after an index
    # (target id, cycle index or 0 for every cycle) -> sub-target values of a customer without
    # their own target values (a cache: percentages are computed once, not per event).
    sub_target_values: dict[tuple[str, int], tuple[Decimal, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, definition: MilestoneDefinition, org: OrganisationSettings) -> Compiled:
        group = definition.group
        single = len(group.targets) == 1 and group.overall is None
        targets = tuple(group.all_targets())
        settings = MilestoneSettings.resolve(org, definition)
        plans = tuple(TargetPlan.of(t) for t in targets)
        return cls(
            definition=definition,
            settings=settings,
            activities=frozenset(t.activity.value for t in targets),
            headline_id=group.targets[0].target_id if single else GROUP,
            headline_name=group.targets[0].name if single else definition.name,
            targets=targets,
            specific_customers=frozenset(definition.enrolment.customers),
            plans=plans,
            zone=definition.zone,
            fixed_cycles=isinstance(definition.cycles, (CalendarCycles, CustomCycles)),
            required_targets=len(group.targets) if group.condition == "all" else group.min_targets,
            target_ids=frozenset(t.target_id for t in targets),
            headline_key=f"ach:{group.targets[0].target_id if single else GROUP}",
            buffer=timedelta(days=settings.buffer_days),
            counts_days=any(p.accumulation in (Accumulation.DAYS, Accumulation.DAILY_MAX) for p in plans),
            adjusts_returns=settings.adjust_on_bill_return or settings.line_item_return == "prorate",
        )

    @property
    def single_target(self) -> bool:
        return self.headline_id != GROUP


@dataclass
class Registry:
    """The definitions and settings every worker sees, indexed for the hot path."""

    org_settings: dict[str, OrganisationSettings] = field(default_factory=dict)
    milestones: dict[str, Compiled] = field(default_factory=dict)
    _by_activity: dict[str, list[Compiled]] = field(default_factory=dict)
    # Active "all customers" milestones with fixed cycles: every customer seen joins them.
    open_to_all: list[Compiled] = field(default_factory=list)
    # Active milestones that enrol customers by their performance in another milestone.
    by_performance: list[Compiled] = field(default_factory=list)
    # Milestones created to be backfilled: their live records wait for their first run (pipeline/backfill.py).
    awaiting_backfill: frozenset[str] = frozenset()
    # (activity, org id) -> what ``listening`` answers (a cache, emptied whenever a definition changes).
    _listening: dict[tuple[str, str], tuple[Compiled, ...]] = field(default_factory=dict)
    # Changes whenever a milestone id is added: what pipeline/backfill.py checks records against.
    milestones_version: str = field(default_factory=lambda: f"{_PROCESS}.{next(_VERSIONS)}")
    backfill_of: str | None = None  # set on the one-milestone view ``only`` returns
    revision: int = 0  # counts changes of definitions or settings: views built from an older one are stale

    def settings_for(self, org_id: str) -> OrganisationSettings:
        return self.org_settings.get(org_id) or OrganisationSettings(org_id=org_id)

    def put_definition(self, definition: MilestoneDefinition) -> None:
        if definition.milestone_id not in self.milestones:
            self.milestones_version = f"{_PROCESS}.{next(_VERSIONS)}"
        self.milestones[definition.milestone_id] = Compiled.build(definition, self.settings_for(definition.org_id))
        self._reindex()

    def only(self, milestone_id: str) -> Registry:
        """A registry of this one milestone (with every organisation's settings): an engine over it
        applies records to that milestone alone (a backfill, pipeline/backfill.py)."""
        view = Registry(
            org_settings=self.org_settings,
            milestones={milestone_id: self.milestones[milestone_id]},
            backfill_of=milestone_id,
        )
        view._reindex()
        return view

    def without(self, milestone_ids: frozenset[str]) -> Registry:
        """A registry of every milestone but these: an engine over it leaves them alone (live input
        while they are being backfilled, pipeline/backfill.py)."""
        view = Registry(
            org_settings=self.org_settings,
            milestones={mid: c for mid, c in self.milestones.items() if mid not in milestone_ids},
        )
        view._reindex()
        return view

    def put_settings(self, settings: OrganisationSettings) -> None:
        self.org_settings[settings.org_id] = settings
        for mid, compiled in list(self.milestones.items()):
            if compiled.definition.org_id == settings.org_id:
                self.milestones[mid] = Compiled.build(compiled.definition, settings)
        self._reindex()

    def _reindex(self) -> None:
        self.revision += 1
        index: dict[str, list[Compiled]] = {}
        for compiled in sorted(self.milestones.values(), key=lambda c: c.definition.milestone_id):
            for activity in compiled.activities:
                index.setdefault(activity, []).append(compiled)
        self._by_activity = index
        self._listening = {}
        self.open_to_all = [
            c
            for c in sorted(self.milestones.values(), key=lambda c: c.definition.milestone_id)
            if c.definition.active
            and c.definition.enrolment.method == "all"
            and c.definition.cycles.kind in ("calendar", "custom")
        ]
        self.by_performance = [
            c
            for c in sorted(self.milestones.values(), key=lambda c: c.definition.milestone_id)
            if c.definition.active and c.definition.enrolment.method == "performance"
        ]
        self.awaiting_backfill = frozenset(mid for mid, c in self.milestones.items() if c.definition.backfill)

    def in_org(self, milestone_id: str, org_id: str) -> bool:
        """Whether a milestone may be named by an organisation's input: it is that organisation's,
        or not defined (yet)."""
        compiled = self.milestones.get(milestone_id)
        return compiled is None or compiled.definition.org_id == org_id

    def listening(self, activity: str, org_id: str) -> tuple[Compiled, ...]:
        """The milestones of an organisation that count an activity: a customer's events count
        only towards the milestones of the customer's organisation."""
        found = self._listening.get((activity, org_id))
        if found is None:
            found = tuple(c for c in self._by_activity.get(activity, ()) if c.definition.org_id == org_id)
            if len(self._listening) > 4096:
                self._listening.clear()  # organisations are many only in odd input: keep the cache small
            self._listening[(activity, org_id)] = found
        return found
