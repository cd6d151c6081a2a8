"""Events Milestream publishes.

``MilestoneEvent`` goes to the promotions topic; its fields are what a
promotion rule reads (the spec's ``currentEvent`` attributes). ``DeadLetter``
goes to the dead-letter topic. Both carry a deterministic ``event_id`` derived
from their cause, so reprocessing the same input yields the same id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import DEFAULT_ORG, Amount, Id, Name, OutputTimestamp, StrictModel, Text


class CycleRef(StrictModel):
    index: int = Field(ge=1)
    name: str  # currentEvent.targetPeriod
    start: OutputTimestamp
    end: OutputTimestamp | None = None  # open-ended for "till target achieved" cycles


class TargetStatus(StrictModel):
    """Progress of one target of the group at the time of the event."""

    target_id: Id
    target_name: Name
    achieved_value: Amount  # currentEvent.targetAchieved
    defined_value: Amount  # currentEvent.targetDefined
    gap: Amount  # currentEvent.targetGaps: defined - achieved (negative once exceeded)
    achieved: bool
    overall: bool = False
    # The progress the customer was enrolled with (the enrolment's initial_balance), included in
    # achieved_value; absent when there is none.
    initial_balance: Amount | None = None


class MilestoneEvent(StrictModel):
    """An achievement, sub-target or cycle-close event for one customer.

    ``kind`` tells the three apart without any rule on the flag:

    * ``achievement``: the target (or the group) was just reached;
      ``is_target_achieved_event`` is true.
    * ``sub_target``: a sub-target was just reached; ``milestone_value_defined``
      is its value and ``trigger_names`` holds its name.
    * ``cycle_close``: the cycle ended (after its buffer days); sent for every
      enrolled customer, achieved or not; ``is_target_achieved_event`` is false.
    """

    type: Literal["milestone_event"] = "milestone_event"
    schema_version: Literal[1] = 1
    event_id: Id
    kind: Literal["achievement", "sub_target", "cycle_close"]
    customer_id: Id
    org_id: Id = DEFAULT_ORG  # the organisation of the customer (and of the milestone)
    milestone_id: Id
    milestone_name: Name  # currentEvent.targetName reads the target's name, see target_name
    till_code: Id | None = None
    target_id: Id  # the target this event is about, or "group" for a unified group
    target_name: Name  # currentEvent.targetName
    cycle: CycleRef
    achieved_value: Amount  # currentEvent.targetAchieved
    defined_value: Amount  # currentEvent.targetDefined
    gap: Amount  # currentEvent.targetGaps
    achieved: bool
    is_target_achieved_event: bool  # currentEvent.isTargetAchievedEvent
    milestone_value_defined: Amount | None = None  # currentEvent.milestoneValueDefined (sub-target value)
    trigger_names: list[Name] = Field(default_factory=list)  # currentEvent.targetMilestoneTrigger
    targets: list[TargetStatus] = Field(default_factory=list)  # every target of the group
    occurred_at: OutputTimestamp  # event time of the activity (or cycle end) that caused it
    cause: Text  # what caused it: "<topic>/<partition>/<offset>" or "cycle-end"
    # Sent by a backfill (docs/backfill.md): a milestone created after the activity, reprocessed
    # over the retained topics. ``backfill_as_of`` is when it would have been sent had the
    # milestone existed then: the activity's record time, or the cycle's due time for a close.
    backfilled: bool = False
    backfill_as_of: OutputTimestamp | None = None


class DeadLetter(StrictModel):
    """An input record Milestream could not use, with why and where it came from."""

    type: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = 1
    reason: Literal[
        "malformed_json",
        "schema_violation",
        "unknown_event_type",
        "oversize_payload",
        "wrong_key",
        "invalid_definition",
        "invalid_enrolment",
        "processing_error",
    ]
    detail: Text
    source_topic: str
    source_partition: int
    source_offset: int
    key_b64: str | None = Field(None, description="The original key, cut to MILESTREAM_DEAD_LETTER_ORIGINAL_BYTES.")
    key_bytes: int | None = Field(None, description="Length of the original key (none: the record had no key).")
    value_b64: str = Field(description="The original value, cut to MILESTREAM_DEAD_LETTER_ORIGINAL_BYTES.")
    value_bytes: int = Field(description="Length of the original value.")
    value_sha256: str = Field(description="sha256 of the whole original value, hex.")
    truncated: bool = Field(description="True if key_b64 or value_b64 holds only a prefix of the original.")
    failed_at: OutputTimestamp


class LateEventRecord(StrictModel):
    """An input event that arrived after its cycle's buffer days had elapsed.

    It is not attributed to any other cycle; this record (and a metric) keep
    it from being lost without trace.
    """

    type: Literal["late_event"] = "late_event"
    schema_version: Literal[1] = 1
    event_id: Id  # the late input event's own id
    customer_id: Id
    org_id: Id = DEFAULT_ORG
    milestone_id: Id
    cycle_index: int = Field(ge=1)
    cycle_end: OutputTimestamp
    event_time: OutputTimestamp
    recorded_at: OutputTimestamp
    source: Text  # "<topic>/<partition>/<offset>"


class UnmatchedReturnRecord(StrictModel):
    """A return whose bill Milestream no longer (or never) kept, so no milestone was adjusted.

    ``bill_unknown``: no milestone that adjusts on returns counted the bill, or it
    predates Milestream. ``bill_expired``: the bill was older than the
    organisation's ``bill_retention_days`` (or beyond the per-customer bill cap).
    The return still counts as a "return" activity.
    """

    type: Literal["unmatched_return"] = "unmatched_return"
    schema_version: Literal[1] = 1
    event_id: Id  # the return event's own id
    customer_id: Id
    org_id: Id = DEFAULT_ORG
    return_id: Id
    bill_id: Id
    reason: Literal["bill_unknown", "bill_expired"]
    event_time: OutputTimestamp
    source: Text  # "<topic>/<partition>/<offset>"
