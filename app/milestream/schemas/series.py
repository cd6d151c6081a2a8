"""Milestone series: tiers of points for ambassador programs (docs/series.md).

A series is an ordered list of tiers with increasing point thresholds and one
reward reference each, tied to one or more programs. Points come from ledger
entries (actions, campaigns, referrals, manual adjustments); each tier unlock,
each completed repetition and the promotion to another program are published
on the promotions topic as ``series_event`` records.

Wire models here:

* ``milestone_series`` (definitions topic, key ``series:<series_id>``): create
  or edit a series; a reward change is an edited definition.
* ``program_membership`` (enrolments topic, keyed by customer): a customer
  joins or leaves a program.
* ``reward_redemption`` (redemptions topic, keyed by customer): the reward
  service reports that a customer redeemed a tier's reward.
* ``series_reward_change`` (series-commands topic, internal): one per
  partition when an edit changed rewards; Milestream writes it itself.
* ``series_event`` and ``lifetime_points``: outputs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from .base import DEFAULT_ORG, Amount, Id, Name, OutputTimestamp, PositiveAmount, StrictModel, Text, Timestamp
from .inputs import InputEvent, NamesNoMilestone

MAX_TIERS = 100
MAX_REPEATS = 100
MAX_PROGRAMS = 100

COUNTED_SOURCES = ("action", "campaign", "referral", "adjustment")
"""Ledger sources that count towards a series unless the series says otherwise."""

LedgerSource = Literal["action", "campaign", "referral", "transaction", "promotion", "adjustment", "other"]


def series_key(series_id: str) -> str:
    """The definitions-topic key of a series."""
    return f"series:{series_id}"


class Reward(StrictModel):
    """A reference to a reward kept by the reward service (a product, a discount code, ...)."""

    reward_id: Id
    kind: Id = "custom"  # e.g. "custom", "automated_product", "discount_code"
    name: Name | None = None


class SeriesTier(StrictModel):
    """One milestone of a series: unlocked when the customer's series points reach ``points``."""

    tier_id: Id
    name: Name
    points: PositiveAmount
    reward: Reward

    @model_validator(mode="before")
    @classmethod
    def _one_reward(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rewards" in data:
            raise ValueError("a milestone (tier) has exactly one reward: use 'reward', not a list of 'rewards'")
        return data


class SeriesDefinition(StrictModel):
    """A milestone series as the brand configured it (the snapshot kept on the definitions topic).

    ``repeats`` is how many times a customer may repeat the series after
    completing it once (0: not repeatable), so a customer completes it at most
    ``repeats + 1`` times. Points beyond the last tier carry into the next
    repetition. On the final completion a customer is promoted to
    ``promote_to_program_id`` when it is set.
    """

    type: Literal["milestone_series"] = "milestone_series"
    schema_version: Literal[1] = 1
    series_id: Id
    org_id: Id = "default"
    name: Name
    description: Text = ""
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    active: bool = True
    program_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_PROGRAMS)]
    tiers: Annotated[list[SeriesTier], Field(min_length=1, max_length=MAX_TIERS)]
    repeats: Annotated[int, Field(ge=0, le=MAX_REPEATS)] = 0
    promote_to_program_id: Id | None = None
    currency: Name = "points"
    sources: Annotated[list[LedgerSource], Field(min_length=1, max_length=7)] = Field(
        default_factory=lambda: list(COUNTED_SOURCES)  # type: ignore[arg-type]
    )

    @model_validator(mode="after")
    def _consistent(self) -> SeriesDefinition:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if len(set(self.program_ids)) != len(self.program_ids):
            raise ValueError("program_ids must be unique")
        ids = [tier.tier_id for tier in self.tiers]
        if len(set(ids)) != len(ids):
            raise ValueError("tier_id values must be unique within a series")
        for before, after in zip(self.tiers, self.tiers[1:]):
            if after.points <= before.points:
                raise ValueError(
                    f"tier {after.tier_id!r} needs more points than tier {before.tier_id!r} "
                    f"({after.points} <= {before.points}): thresholds must increase"
                )
        if self.promote_to_program_id is not None and self.promote_to_program_id in self.program_ids:
            raise ValueError("promote_to_program_id must be another program than the series' own programs")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError("sources must be unique")
        return self

    @property
    def definitions_key(self) -> str:
        return series_key(self.series_id)

    @property
    def repetitions(self) -> int:
        """How many times a customer can complete the series in all."""
        return self.repeats + 1


class ProgramMembership(InputEvent, NamesNoMilestone):
    """A customer joins or leaves a program (enrolments topic, keyed by customer)."""

    type: Literal["program_membership"] = "program_membership"
    program_id: Id
    action: Literal["join", "leave"] = "join"


class RewardRedemption(InputEvent, NamesNoMilestone):
    """The reward service reports that a customer redeemed (or received) a tier's reward."""

    type: Literal["reward_redemption"] = "reward_redemption"
    series_id: Id
    tier_id: Id
    repetition: Annotated[int, Field(ge=1, le=MAX_REPEATS + 1)] = 1
    reward_id: Id  # the reward actually redeemed


class TierRewardChange(StrictModel):
    tier_id: Id
    reward: Reward
    previous_reward: Reward


class SeriesRewardChange(StrictModel):
    """Internal: an edit changed tier rewards; sent once to every partition of the series-commands topic.

    Each partition's owner gives the new reward to that partition's customers
    who unlocked the tier and have not redeemed it. ``version`` is the
    definitions record that made the change.
    """

    type: Literal["series_reward_change"] = "series_reward_change"
    schema_version: Literal[1] = 1
    series_id: Id
    series_name: Name
    version: Text
    changed_at: Timestamp
    changes: Annotated[list[TierRewardChange], Field(min_length=1, max_length=MAX_TIERS)]


class TierRef(StrictModel):
    tier_id: Id
    name: Name
    index: int = Field(ge=1)  # 1-based position in the series
    points: Amount  # the threshold


class SeriesEvent(StrictModel):
    """What happened in a customer's series; ``kind`` says which:

    * ``tier_unlocked``: the customer's points reached a tier in this repetition
      (once per tier per repetition); ``reward`` is the tier's reward.
    * ``series_completed``: the last tier of a repetition was unlocked; ``final``
      when no repetition is left.
    * ``program_promotion``: after the final completion, the customer is to be
      moved to ``promote_to_program_id`` (once per customer and series).
    * ``tier_reward_changed``: the brand changed the reward of a tier this
      customer unlocked and has not redeemed; ``reward`` is what they can claim
      now, ``previous_reward`` what they could claim before. Customers who
      redeemed get no such event and keep the reward they redeemed.
    """

    type: Literal["series_event"] = "series_event"
    schema_version: Literal[1] = 1
    event_id: Id
    kind: Literal["tier_unlocked", "series_completed", "program_promotion", "tier_reward_changed"]
    customer_id: Id
    org_id: Id = DEFAULT_ORG
    series_id: Id
    series_name: Name
    repetition: int = Field(ge=1)
    repetitions: int = Field(ge=1)  # how many the series allows in all
    final: bool = False
    tier: TierRef | None = None
    reward: Reward | None = None
    previous_reward: Reward | None = None
    series_points: Amount  # the customer's points in the repetition the event is about, after it
    program_ids: list[Id] = Field(default_factory=list)  # the customer's programs tied to the series
    promote_to_program_id: Id | None = None
    occurred_at: OutputTimestamp
    cause: Text


class LifetimePoints(StrictModel):
    """A customer's lifetime points (compacted lifetime-points topic, keyed by customer)."""

    type: Literal["lifetime_points"] = "lifetime_points"
    schema_version: Literal[1] = 1
    customer_id: Id
    org_id: Id = DEFAULT_ORG
    points: Amount
    updated_at: OutputTimestamp  # event time of the ledger entry that last changed them
    cause: Text


SERIES_DEFINITION_MODELS: dict[str, type[BaseModel]] = {"milestone_series": SeriesDefinition}
SERIES_INPUT_MODELS: dict[str, type[BaseModel]] = {
    "program_membership": ProgramMembership,
    "reward_redemption": RewardRedemption,
    "series_reward_change": SeriesRewardChange,
}
SERIES_OUTPUT_MODELS: dict[str, type[BaseModel]] = {"series_event": SeriesEvent, "lifetime_points": LifetimePoints}
