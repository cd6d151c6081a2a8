"""A small declarative filter language for scope rules.

A filter is JSON data, never code: a condition compares one field of the
activity with a constant, and ``all`` / ``any`` / ``not`` combine conditions.

    {"all": [
        {"field": "line_item.category", "op": "in", "value": ["shoes", "bags"]},
        {"field": "transaction.gross_amount", "op": "gte", "value": "500"}
    ]}

Field paths name what a rule can look at:

* ``transaction.<field>``: gross_amount, net_amount, store_id, zone_id,
  concept_id, till_id, bill_id, and ``transaction.extended_fields.<name>``;
* ``line_item.<field>``: sku, category, quantity, gross_amount, net_amount,
  ``line_item.attributes.<name>``, ``line_item.extended_fields.<name>``;
* ``event.<field>``: name, ``event.attributes.<name>`` (behavioural events and
  other customer activities);
* ``entry.<field>``: currency, kind, amount, source (ledger entries).

``eq`` / ``in`` compare text with text as text (SKU "00123" is not "123") and
numerically when either side is a number; ``transaction.net_amount`` and
``line_item.net_amount`` read the gross amount when no net amount was given.

Line-item fields are only valid on line-item targets (the spec's note: rules on
line items need the line-item level); the definition validator enforces it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import StrictModel

ComparisonOp = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "contains"]

_ROOTS = {"transaction", "line_item", "event", "entry"}
MAX_FILTER_NODES = 200


class Condition(StrictModel):
    field: Annotated[str, Field(min_length=3, max_length=200)]
    op: ComparisonOp
    value: Any = None

    @field_validator("field")
    @classmethod
    def _known_root(cls, path: str) -> str:
        root = path.split(".", 1)[0]
        if root not in _ROOTS or "." not in path:
            raise ValueError(
                f"unknown field {path!r}: a field starts with one of {', '.join(sorted(_ROOTS))} followed by '.<name>'"
            )
        return path

    def model_post_init(self, _context: Any) -> None:
        if self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value or len(self.value) > 10_000:
                raise ValueError(f"{self.field} {self.op}: value must be a non-empty list (at most 10000 items)")
        elif self.op == "exists":
            if self.value not in (None, True, False):
                raise ValueError(f"{self.field} exists: value must be true, false or omitted")
        elif self.op in ("gt", "gte", "lt", "lte"):
            if as_number(self.value) is None:
                raise ValueError(f"{self.field} {self.op}: value must be a number, got {self.value!r}")
        elif self.value is None or isinstance(self.value, (list, dict)):
            raise ValueError(f"{self.field} {self.op}: value must be a single string, number or boolean")


class AllOf(StrictModel):
    all: Annotated[list[Filter], Field(min_length=1, max_length=MAX_FILTER_NODES)]


class AnyOf(StrictModel):
    any: Annotated[list[Filter], Field(min_length=1, max_length=MAX_FILTER_NODES)]


class Not(StrictModel):
    not_: Filter = Field(alias="not")


Filter = Condition | AllOf | AnyOf | Not

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


def as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, float, str)):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def fields_used(node: Filter) -> list[str]:
    """Every field path a filter reads, in order of appearance."""
    if isinstance(node, Condition):
        return [node.field]
    if isinstance(node, Not):
        return fields_used(node.not_)
    children = node.all if isinstance(node, AllOf) else node.any
    return [path for child in children for path in fields_used(child)]
