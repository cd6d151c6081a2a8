"""Lifecycle commands on the definitions topic (keyed by the milestone id).

Creating and editing a milestone is a ``milestone_definition`` record (the
whole definition). Activation, deactivation and cloning are the commands
below. After applying a command, Milestream publishes the resulting
definition under the same key, so the compacted topic always ends with a
full definition per milestone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Id, Name, StrictModel, Text, Timestamp
from .definitions import Enrolment


class MilestoneStatusChange(StrictModel):
    """Deactivate (stop tracking) or reactivate (resume, while the milestone has not ended)."""

    type: Literal["milestone_status"] = "milestone_status"
    schema_version: Literal[1] = 1
    milestone_id: Id
    active: bool


class MilestoneClone(StrictModel):
    """Copy a live or upcoming milestone, everything but its enrolment, under a new id and name.

    ``changes`` is a JSON merge patch (RFC 7396) on the source definition: objects merge key by
    key, ``null`` removes a field (back to its default), anything else (a list included) replaces
    it. A clone may change what an edit of the original may not (a target's KPI or activity,
    the cycles, the timezone); the result is validated as a new definition.
    """

    type: Literal["milestone_clone"] = "milestone_clone"
    schema_version: Literal[1] = 1
    milestone_id: Id  # the new milestone
    source_milestone_id: Id
    name: Name
    description: Text | None = None
    enrolment: Enrolment
    changes: dict[str, Any] = Field(default_factory=dict)


class CloseTick(StrictModel):
    """Internal: "close what is due at ``now`` on this partition" (the close-ticks topic).

    Each worker sends one per owned partition every ``MILESTREAM_CLOSE_TICK_INTERVAL``
    seconds with its wall clock; a redelivered tick closes exactly what it closed before.
    """

    type: Literal["close_tick"] = "close_tick"
    schema_version: Literal[1] = 1
    now: Timestamp


class BackfillMarker(StrictModel):
    """Internal: the start or the end of a backfill run on one partition of the backfill topic.

    ``milestream backfill`` writes a start marker to every partition before it copies the
    retained records there, and an end marker after the last of them (docs/backfill.md). A
    milestone's closes on a partition wait between the two, so a past cycle closes with all
    of its records."""

    type: Literal["backfill_marker"] = "backfill_marker"
    schema_version: Literal[1] = 1
    milestone_id: Id
    run_id: Id
    marker: Literal["start", "end"]
