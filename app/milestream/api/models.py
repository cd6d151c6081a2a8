"""Request and response models of the HTTP API: the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..schemas.backfill import BackfillStatus
from ..schemas.base import Id, Name, NonNegativeAmount, StrictModel, Text, Timestamp
from ..schemas.definitions import Enrolment as EnrolmentMethod
from ..schemas.inputs import CurrencyKind, TargetValueOverride

Decimal = Annotated[str, Field(description='A decimal number as text, e.g. "5200.00".')]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- errors
class ErrorResponse(Out):
    """Every 4xx and 5xx answer."""

    error: str = Field(description="What was wrong, in one line.")
    reasons: list[str] = Field(default_factory=list, description="Every reason, when there are several.")


# ---------------------------------------------------------------- progress
class CycleRef(Out):
    index: int
    name: str
    start: str
    end: str | None


class SubTargetProgress(Out):
    name: str
    criterion: Literal["percentage", "absolute"]
    value: Decimal = Field(description="The sub-target's value for this customer (milestone_value_defined).")
    reached: bool


class TargetProgress(Out):
    target_id: str
    name: str
    kpi: str
    overall: bool = Field(description="The group's overall target.")
    achieved: Decimal = Field(description="Progress in the cycle, initial balance included.")
    defined: Decimal | None = Field(description="The customer's target (per-customer/per-cycle overrides applied).")
    gap: Decimal | None = Field(description="defined - achieved.")
    reached: bool
    initial_balance: Decimal | None = None
    overridden: bool = Field(description="The customer has a target value of their own.")
    sub_targets: list[SubTargetProgress]


class GroupProgress(Out):
    condition: Literal["all", "any"]
    targets_met: int
    targets_required: int
    reached: bool


class CycleProgress(Out):
    cycle: CycleRef
    open: bool = Field(description="False for a cycle the customer has no progress in yet.")
    targets: list[TargetProgress]
    group: GroupProgress | None = Field(description="For a milestone of several targets.")
    achievements: list[str] = Field(description="Target ids (and 'group') already awarded in the cycle.")


class ClosedCycle(Out):
    index: int
    name: str
    start: str
    end: str
    values: dict[str, Decimal] = Field(description="Achieved per target ('group': targets met); zeros omitted.")
    achievements: list[str]


class EnrolmentStatus(Out):
    enrolled: bool
    method: str
    enrolled_at: str | None
    by_performance_at: str | None
    from_cycle_start: str | None


class MilestoneProgress(Out):
    milestone_id: str
    name: str
    org_id: str
    status: Literal["upcoming", "live", "ended"]
    active: bool
    enrolment: EnrolmentStatus
    current_cycle: CycleProgress | None
    open_cycles: list[CycleProgress] = Field(description="Every cycle with progress not closed yet.")
    closed_cycles: list[ClosedCycle] = Field(description="Results of closed cycles, as far as the state keeps them.")
    last_closed_cycle: int | None


class CustomerProgress(Out):
    customer_id: str
    org_id: str
    partition: int
    as_of: str
    milestones: list[MilestoneProgress]


# ---------------------------------------------------------------- history
class Source(Out):
    topic: str
    partition: int
    offset: int


class Contribution(Out):
    source: Source
    event_id: str | None
    type: str
    event_time: str | None
    deltas: dict[str, Decimal] = Field(description="Change of each target's value in the cycle.")
    carried: dict[str, dict[str, Decimal]] = Field(
        default_factory=dict, description="Returns carried into a later cycle, by cycle index."
    )
    late: bool = Field(description="Refused: recorded after the cycle's buffer days.")


class CycleHistory(Out):
    cycle: int
    contributions: list[Contribution]


class MilestoneHistory(Out):
    customer_id: str
    org_id: str
    milestone_id: str
    per_cycle_limit: int
    cycles_limit: int
    cycles: list[CycleHistory]


# ---------------------------------------------------------------- leaderboards
class RankedCustomer(Out):
    rank: int
    customer_id: str
    value: Decimal


class Leaderboard(Out):
    milestone_id: str
    target_id: str
    cycle: int
    top: int
    page: int
    entries: list[RankedCustomer]


class CustomerStanding(Out):
    milestone_id: str
    target_id: str
    cycle: int
    rank: int
    value: Decimal
    above: list[RankedCustomer]
    below: list[RankedCustomer]


class CustomerLeaderboards(Out):
    customer_id: str
    org_id: str
    standings: list[CustomerStanding]


class PartialEntry(Out):
    key: str
    customer_id: str
    value: Decimal


class LeaderboardPart(Out):
    """One worker's partitions of a board (internal: the worker answering a leaderboard merges these)."""

    partitions: list[int]
    entries: list[PartialEntry] = Field(description="The head of each partition, merged, best first.")
    ahead: int = Field(0, description="With 'key': entries ranked before it.")
    above: list[PartialEntry] = Field(default_factory=list)
    below: list[PartialEntry] = Field(default_factory=list)


class BoardPart(Out):
    """A board a customer is on, their value there, and one worker's part of it around them."""

    milestone_id: str
    target_id: str
    cycle: int
    value: Decimal
    part: LeaderboardPart


class StandingParts(Out):
    """Internal: the boards a customer is on, as their partition's owner reads them, with the owner's
    part of each (the worker answering /leaderboards/customers/{id} adds the other workers' parts)."""

    boards: list[BoardPart]


# ---------------------------------------------------------------- commands
class EnrolCustomer(StrictModel):
    customer_id: Id
    action: Literal["enrol", "unenrol"] = "enrol"
    targets: Annotated[list[TargetValueOverride], Field(max_length=50)] = Field(
        default_factory=list, description="Per-customer (and per-cycle) target values."
    )
    cycle: Name | None = None
    initial_balance: dict[Id, NonNegativeAmount] = Field(default_factory=dict, max_length=50)
    reenrol: Literal["resume", "reset"] = "resume"
    event_id: Id | None = Field(None, description="Default: derived from the milestone and this entry.")


class EnrolmentRequest(StrictModel):
    """One customer (``customer``) or a batch (``customers``)."""

    customer: EnrolCustomer | None = None
    customers: Annotated[list[EnrolCustomer], Field(max_length=1000)] = Field(default_factory=list)
    event_time: Timestamp | None = Field(None, description="Default: now.")


class ProducedEvent(Out):
    event_id: str
    customer_id: str
    topic: str
    partition: int
    offset: int


class EnrolmentAccepted(Out):
    milestone_id: str
    events: list[ProducedEvent]


class StatusRequest(StrictModel):
    active: bool


class CloneRequest(StrictModel):
    milestone_id: Id = Field(description="The new milestone's id.")
    name: Name
    description: Text | None = None
    enrolment: EnrolmentMethod
    changes: dict[str, object] = Field(default_factory=dict, description="JSON merge patch on the source.")


class DefinitionAccepted(Out):
    milestone_id: str
    topic: str
    partition: int
    offset: int
    backfill: str | None = Field(
        default=None, description="Where to follow the backfill this request started (with ?backfill=true)."
    )


class BackfillProgress(Out):
    """A milestone's last backfill run (docs/backfill.md)."""

    milestone_id: str
    status: BackfillStatus | None = Field(description="The run's last checkpoint; null: it has had no run.")
    running_here: bool = Field(description="Whether this worker is running it now (started through this API).")
    error: str | None = Field(default=None, description="Why the run this worker ran stopped, if it did.")


class AdjustmentRequest(StrictModel):
    org_id: Id = "default"
    amount: Annotated[str, Field(pattern=r"^-?\d{1,18}(\.\d{1,6})?$")] = Field(
        description="Points (or the currency's units) added; negative to remove."
    )
    currency: Name = "points"
    kind: CurrencyKind = CurrencyKind.REGULAR
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    actor: Id
    entry_id: Id | None = Field(None, description="The ledger entry's id (default: generated).")
    event_time: Timestamp | None = Field(None, description="Default: now.")


class AdjustmentAccepted(Out):
    event_id: str
    customer_id: str
    topic: str
    partition: int
    offset: int
