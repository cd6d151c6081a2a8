"""Customer activity events that upstream systems produce, keyed by customer id.

Every event carries ``type`` (which model it is), ``schema_version``, a
producer-assigned ``event_id``, the ``customer_id`` (which must equal the Kafka
key), the ``org_id`` of the organisation the customer belongs to (``"default"``
when absent; the same customer id in two organisations is two customers),
``event_time`` (when it happened) and optionally ``recorded_at`` (when the upstream
system recorded it; late data is judged on it, falling back to the Kafka record
timestamp).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import (
    DEFAULT_ORG,
    MAX_LINE_ITEMS,
    Amount,
    Attributes,
    Id,
    Name,
    NonNegativeAmount,
    StrictModel,
    Text,
    Timestamp,
)


class InputEvent(StrictModel):
    schema_version: Literal[1] = 1
    event_id: Id
    customer_id: Id
    org_id: Id = DEFAULT_ORG
    event_time: Timestamp
    recorded_at: Timestamp | None = None


class NamesNoMilestone:
    """An event that names no milestone (of the customer events, only an enrolment does one).

    The pipeline asks every customer event for the milestone it names, with
    ``getattr(event, "milestone_id", None)``: this class attribute answers at once, where a
    model without the attribute would answer through pydantic's failing look-up. Not a
    field: it is neither validated nor serialised."""

    milestone_id: ClassVar[None] = None


class StoreRef(StrictModel):
    """Where an activity happened; scope filters match on these."""

    store_id: Id | None = None
    zone_id: Id | None = None
    concept_id: Id | None = None
    till_id: Id | None = None


class LineItem(StrictModel):
    line_id: Id
    sku: Id
    category: Id | None = None
    quantity: NonNegativeAmount = Decimal(1)
    gross_amount: NonNegativeAmount
    net_amount: NonNegativeAmount | None = None
    attributes: Attributes = Field(default_factory=dict)
    extended_fields: Attributes = Field(default_factory=dict)

    @property
    def net(self):
        return self.gross_amount if self.net_amount is None else self.net_amount


def _unique_lines(items: list[LineItem]) -> list[LineItem]:
    # On the field, not the model: a bill without line items (most of them) makes no Python call.
    ids = [item.line_id for item in items]
    if len(ids) != len(set(ids)):
        raise ValueError("line_id values must be unique within a bill")
    return items


class Transaction(InputEvent, StoreRef, NamesNoMilestone):
    """A bill. ``gross_amount`` is before discounts, ``net_amount`` what was paid."""

    type: Literal["transaction"] = "transaction"
    bill_id: Id
    gross_amount: NonNegativeAmount
    net_amount: NonNegativeAmount | None = None
    line_items: Annotated[list[LineItem], Field(max_length=MAX_LINE_ITEMS), AfterValidator(_unique_lines)] = Field(
        default_factory=list
    )
    extended_fields: Attributes = Field(default_factory=dict)

    @property
    def net(self):
        return self.gross_amount if self.net_amount is None else self.net_amount


class ReturnedLine(StrictModel):
    line_id: Id
    quantity: NonNegativeAmount | None = None
    amount: NonNegativeAmount


class Return(InputEvent, StoreRef, NamesNoMilestone):
    """A return against an earlier bill: the whole bill, or some of its line items."""

    type: Literal["return"] = "return"
    return_id: Id
    bill_id: Id
    scope: Literal["bill", "line_items"]
    amount: NonNegativeAmount | None = None
    line_items: Annotated[list[ReturnedLine], Field(max_length=MAX_LINE_ITEMS)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lines_match_scope(self) -> Return:
        if self.scope == "line_items" and not self.line_items:
            raise ValueError("a line_items return must list at least one returned line")
        if self.scope == "bill" and self.line_items:
            raise ValueError("a whole-bill return must not list line items")
        return self


class BehaviouralEvent(InputEvent, StoreRef, NamesNoMilestone):
    type: Literal["behavioural_event"] = "behavioural_event"
    name: Name
    attributes: Attributes = Field(default_factory=dict)


class CurrencyKind(StrEnum):
    REGULAR = "regular"
    PROMOTIONAL = "promotional"


class LedgerEntry(InputEvent, StoreRef, NamesNoMilestone):
    """Points or a named alternate currency credited (positive) or debited (negative).

    ``source`` says what earned it (a program action, a promotion, a referral,
    a manual adjustment); adjustments also carry ``reason`` and ``actor``.
    """

    type: Literal["ledger_entry"] = "ledger_entry"
    entry_id: Id
    currency: Name = "points"
    kind: CurrencyKind = CurrencyKind.REGULAR
    amount: Amount
    source: Literal["action", "campaign", "referral", "transaction", "promotion", "adjustment", "other"] = "other"
    reason: Text | None = None
    actor: Id | None = None

    @model_validator(mode="after")
    def _adjustments_are_explained(self) -> LedgerEntry:
        if self.source == "adjustment" and (not self.reason or not self.actor):
            raise ValueError("a manual adjustment needs a reason and the actor who made it")
        return self


class ActivityType(StrEnum):
    REFERRAL = "referral"
    POINTS_REDEMPTION = "points_redemption"
    COUPON_REDEMPTION = "coupon_redemption"
    TRANSACTION_UPDATE = "transaction_update"
    PROFILE_UPDATE = "profile_update"
    PROMISED_POINTS_CONVERSION = "promised_points_conversion"
    POINTS_REDEMPTION_REVERSAL = "points_redemption_reversal"


class CustomerActivity(InputEvent, StoreRef, NamesNoMilestone):
    """Other customer-level activities the spec lets a target count."""

    type: Literal["customer_activity"] = "customer_activity"
    activity: ActivityType
    attributes: Attributes = Field(default_factory=dict)


class TargetValueOverride(StrictModel):
    """A per-customer target (and sub-target) value, optionally for one cycle only."""

    target_id: Id
    value: NonNegativeAmount
    cycle: Annotated[int, Field(ge=1, le=100)] | None = None
    sub_targets: dict[Name, NonNegativeAmount] = Field(default_factory=dict, max_length=20)


class Enrolment(InputEvent):
    """Enrol a customer into a milestone (or unenrol them), keyed by customer.

    ``targets`` carries per-customer target values for milestones whose target
    differs per customer (the spec's "audience with target values" CSV, one row
    per customer).

    The enrolment API's options (ignored by ``unenrol``):

    * ``cycle``: enrol into that cycle of a calendar or custom milestone, named as
      outputs name it (``cycle.name``: a custom period's name, else ``<milestone
      name> #<n>``) or ``#<n>`` for the n-th cycle. The customer counts from its
      start on; an ended or unknown cycle is dead-lettered (``unknown_cycle``).
      Default: the cycle running at ``event_time`` (or the first one to start).
    * ``initial_balance``: progress per target id the customer starts that cycle
      with; it counts towards the target and its sub-targets.
    * ``reenrol``: after an unenrolment, ``resume`` (default) keeps the progress
      of the cycle running at re-enrolment; ``reset`` starts it from zero.
    """

    type: Literal["enrolment"] = "enrolment"
    milestone_id: Id
    action: Literal["enrol", "unenrol"] = "enrol"
    targets: Annotated[list[TargetValueOverride], Field(max_length=50)] = Field(default_factory=list)
    cycle: Name | None = None
    initial_balance: dict[Id, NonNegativeAmount] = Field(default_factory=dict, max_length=50)
    reenrol: Literal["resume", "reset"] = "resume"


CUSTOMER_EVENT_MODELS: dict[str, type[InputEvent]] = {
    model.model_fields["type"].default: model
    for model in (Transaction, Return, BehaviouralEvent, LedgerEntry, CustomerActivity, Enrolment)
}
"""Every customer-keyed event model by its ``type`` value."""
