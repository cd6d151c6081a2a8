"""Milestone lifecycle: create, edit, activate, deactivate, clone.

Pure rules over the registry; ``now`` is the time of the command (the Kafka
record time in a worker, event time in the simulator). A command that breaks a
rule raises ``Rejected("invalid_definition", ...)`` and changes nothing.

Edits apply from the edit on. What an edit may change follows the spec: the
description, end date, scope, rules, target values, sub-target amounts,
enrolment, settings and till code. The name is immutable; so are the cycles,
the timezone, the organisation, the target-value mode, each target's activity,
KPI, level and field, and each sub-target's criterion ("only the amount can be
updated").
A clone may change any of them: it is validated as a new definition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from ..schemas.codec import Rejected, describe_validation_error
from ..schemas.commands import MilestoneClone, MilestoneStatusChange
from ..schemas.definitions import CalendarCycles, MilestoneDefinition, OrganisationSettings
from .performance_enrolment import check_performance
from .registry import Registry

# What the clone command itself gives, so its changes may not.
_CLONE_GIVEN = ("type", "schema_version", "milestone_id", "name", "description", "enrolment")
_TARGET_IMMUTABLE = (
    "activity",
    "level",
    "kpi",
    "event_name",
    "field",
    "currency",
    "currency_kind",
    "source_milestone_id",
)


def status(definition: MilestoneDefinition, now: datetime) -> tuple[str, str]:
    """(timeline, activity): upcoming/live/ended and active/inactive."""
    timeline = "upcoming" if now < definition.starts_at else "ended" if now >= definition.ends_at else "live"
    return timeline, "active" if definition.active else "inactive"


def _invalid(detail: str) -> Rejected:
    return Rejected("invalid_definition", detail)


def check_edit(before: MilestoneDefinition, after: MilestoneDefinition) -> None:
    """Raise if ``after`` changes what an edit may not change."""
    for field in ("name", "org_id", "timezone", "target_values", "cycles"):
        if getattr(before, field) != getattr(after, field):
            raise _invalid(f"{before.milestone_id}: {field} cannot be changed after creation")
    old_targets = {t.target_id: t for t in before.group.all_targets()}
    new_targets = {t.target_id: t for t in after.group.all_targets()}
    if set(old_targets) != set(new_targets):
        raise _invalid(f"{before.milestone_id}: targets cannot be added or removed by an edit (clone instead)")
    for target_id, old in old_targets.items():
        new = new_targets[target_id]
        for field in _TARGET_IMMUTABLE:
            if getattr(old, field) != getattr(new, field):
                raise _invalid(f"target {old.name!r}: {field} cannot be changed after creation")
        old_subs = {s.name: s.criterion for s in old.sub_targets}
        for sub in new.sub_targets:
            if sub.name in old_subs and old_subs[sub.name] != sub.criterion:
                raise _invalid(
                    f"target {old.name!r}: sub-target {sub.name!r} keeps its criterion ({old_subs[sub.name]}); "
                    "only the amount can change"
                )


FREQUENCY_ORDER = ["daily", "weekly", "monthly", "quarterly", "half_yearly", "yearly"]


def check_tracking(registry: Registry, definition: MilestoneDefinition) -> None:
    """The spec's conditions for a "milestone achieved" target: the tracked milestone exists and
    is active, has a fixed calendar window of a lower frequency, and its duration fits within
    this milestone's."""
    for target in definition.group.all_targets():
        if target.source_milestone_id is None:
            continue
        where = f"target {target.name!r}"
        source = registry.milestones.get(target.source_milestone_id)
        if source is None:
            raise _invalid(f"{where}: tracked milestone {target.source_milestone_id!r} does not exist")
        tracked = source.definition
        if tracked.org_id != definition.org_id:
            raise _invalid(f"{where}: tracked milestone {tracked.milestone_id!r} belongs to another organisation")
        if not tracked.active:
            raise _invalid(f"{where}: tracked milestone {tracked.milestone_id!r} must be active")
        if not isinstance(tracked.cycles, CalendarCycles):
            raise _invalid(f"{where}: tracked milestone {tracked.milestone_id!r} must have a fixed calendar window")
        if not isinstance(definition.cycles, CalendarCycles) or FREQUENCY_ORDER.index(
            tracked.cycles.frequency.value
        ) >= FREQUENCY_ORDER.index(definition.cycles.frequency.value):
            raise _invalid(
                f"{where}: the tracked milestone's frequency ({tracked.cycles.frequency.value}) must be lower than "
                f"this milestone's calendar frequency"
            )
        if tracked.starts_at < definition.starts_at or tracked.ends_at > definition.ends_at:
            raise _invalid(f"{where}: the tracked milestone's duration must fit within this milestone's")


def merge_patch(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396: objects merge key by key, ``None`` removes a key, anything else replaces.
    Recursion follows the original's objects only, so a deeply nested patch cannot exhaust the stack."""
    merged = dict(original)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def cloned_definition(source: MilestoneDefinition, item: MilestoneClone) -> MilestoneDefinition:
    """The clone's definition: the source with the command's changes, validated as a new definition."""
    given = sorted(set(item.changes) & set(_CLONE_GIVEN))
    if given:
        raise _invalid(
            f"clone of {item.source_milestone_id}: changes may not set {', '.join(given)} "
            f"(the clone command gives them)"
        )
    original = {**source.model_dump(mode="json", by_alias=True), "active": True}
    data: dict[str, Any] = merge_patch(original, item.changes)
    data.update(milestone_id=item.milestone_id, name=item.name, enrolment=item.enrolment.model_dump(mode="json"))
    if item.description is not None:
        data["description"] = item.description
    try:
        return MilestoneDefinition.model_validate(data)
    except ValidationError as exc:
        raise _invalid(f"clone of {item.source_milestone_id}: {describe_validation_error(exc)}") from None


def _put_checked(registry: Registry, definition: MilestoneDefinition) -> None:
    """Apply a new or edited definition once it passes the checks against the other milestones."""
    if _name_taken(registry, definition.name, definition.milestone_id, definition.org_id):
        raise _invalid(f"milestone name {definition.name!r} is already used by another milestone")
    check_tracking(registry, definition)
    check_performance(registry, definition)
    registry.put_definition(definition)


def _existing(registry: Registry, milestone_id: str, role: str = "milestone") -> MilestoneDefinition:
    compiled = registry.milestones.get(milestone_id)
    if compiled is None:
        raise _invalid(f"unknown {role} {milestone_id!r}")
    return compiled.definition


def _name_taken(registry: Registry, name: str, milestone_id: str, org_id: str) -> bool:
    """Names are unique within an organisation (the spec); milestone ids across all of them (one definitions topic)."""
    return any(
        c.definition.name == name and c.definition.org_id == org_id and mid != milestone_id
        for mid, c in registry.milestones.items()
    )


def apply_command(registry: Registry, item: BaseModel, now: datetime) -> MilestoneDefinition | None:
    """Apply one definitions-topic item; return the resulting definition to republish (if any)."""
    if isinstance(item, OrganisationSettings):
        registry.put_settings(item)
        return None
    if isinstance(item, MilestoneDefinition):
        current = registry.milestones.get(item.milestone_id)
        if current is not None:
            if current.definition == item:
                return None  # our own republished snapshot, or a repeated edit
            if current.definition.org_id != item.org_id:
                raise _invalid(
                    f"milestone id {item.milestone_id!r} is taken by organisation "
                    f"{current.definition.org_id!r} (milestone ids are unique across organisations)"
                )
            check_edit(current.definition, item)
        _put_checked(registry, item)
        return None
    if isinstance(item, MilestoneStatusChange):
        definition = _existing(registry, item.milestone_id)
        if item.active and not definition.active and now >= definition.ends_at:
            raise _invalid(f"{item.milestone_id}: an ended milestone cannot be reactivated")
        updated = definition.model_copy(update={"active": item.active})
        registry.put_definition(updated)
        return updated
    if isinstance(item, MilestoneClone):
        source = _existing(registry, item.source_milestone_id, "source milestone")
        if item.milestone_id in registry.milestones:
            raise _invalid(f"milestone {item.milestone_id!r} already exists")
        if status(source, now)[0] == "ended":
            raise _invalid(f"{item.source_milestone_id}: only a live or upcoming milestone can be cloned")
        clone = cloned_definition(source, item)
        _put_checked(registry, clone)
        return clone
    raise _invalid(f"unsupported definitions item {type(item).__name__}")
