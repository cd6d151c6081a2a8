"""The definitions and settings an engine works with, compiled once for the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..schemas.definitions import MilestoneDefinition, OrganisationSettings, Target

GROUP = "group"


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
    windows: dict = field(default_factory=dict)  # local date -> fixed-calendar Window (a cache)

    @classmethod
    def build(cls, definition: MilestoneDefinition, org: OrganisationSettings) -> Compiled:
        group = definition.group
        single = len(group.targets) == 1 and group.overall is None
        return cls(
            definition=definition,
            settings=MilestoneSettings.resolve(org, definition),
            activities=frozenset(t.activity.value for t in group.all_targets()),
            headline_id=group.targets[0].target_id if single else GROUP,
            headline_name=group.targets[0].name if single else definition.name,
            targets=tuple(group.all_targets()),
            specific_customers=frozenset(definition.enrolment.customers),
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

    def settings_for(self, org_id: str) -> OrganisationSettings:
        return self.org_settings.get(org_id) or OrganisationSettings(org_id=org_id)

    def put_definition(self, definition: MilestoneDefinition) -> None:
        self.milestones[definition.milestone_id] = Compiled.build(definition, self.settings_for(definition.org_id))
        self._reindex()

    def put_settings(self, settings: OrganisationSettings) -> None:
        self.org_settings[settings.org_id] = settings
        for mid, compiled in list(self.milestones.items()):
            if compiled.definition.org_id == settings.org_id:
                self.milestones[mid] = Compiled.build(compiled.definition, settings)
        self._reindex()

    def _reindex(self) -> None:
        index: dict[str, list[Compiled]] = {}
        for compiled in sorted(self.milestones.values(), key=lambda c: c.definition.milestone_id):
            for activity in compiled.activities:
                index.setdefault(activity, []).append(compiled)
        self._by_activity = index
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

    def in_org(self, milestone_id: str, org_id: str) -> bool:
        """Whether a milestone may be named by an organisation's input: it is that organisation's,
        or not defined (yet)."""
        compiled = self.milestones.get(milestone_id)
        return compiled is None or compiled.definition.org_id == org_id

    def listening(self, activity: str, org_id: str) -> list[Compiled]:
        """The milestones of an organisation that count an activity: a customer's events count
        only towards the milestones of the customer's organisation."""
        return [c for c in self._by_activity.get(activity, ()) if c.definition.org_id == org_id]
