"""Strict building blocks shared by every event schema.

Amounts are decimals (never floats), timestamps must carry a timezone, ids are
non-empty bounded strings, and free-form maps are bounded so one producer bug
cannot blow up a worker's memory.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

SCHEMA_VERSION = 1

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 2000
MAX_ATTRIBUTES = 64
MAX_LINE_ITEMS = 500

Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\s].*[^\s]$|^[^\s]$"),
]
"""A non-empty identifier without leading or trailing whitespace."""

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[^\s].*[^\s]$|^[^\s]$"),
]
"""A display name; leading/trailing spaces are rejected, as the spec requires."""

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    return value


# Decimals travel as JSON strings ("12.50") or numbers on input and always as
# strings on output, so no consumer silently rounds them through a float.
Amount = Annotated[
    Decimal,
    Field(max_digits=24, decimal_places=6),
    AfterValidator(_finite),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
NonNegativeAmount = Annotated[Amount, Field(ge=0)]
PositiveAmount = Annotated[Amount, Field(gt=0)]

Timestamp = AwareDatetime

Scalar = str | bool | int | Decimal
AttributeValue = Annotated[Scalar, Field(union_mode="left_to_right")]


def _bounded_attributes(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes are allowed")
    for key, item in value.items():
        if not key or len(key) > MAX_ID_LENGTH:
            raise ValueError(f"attribute names must be 1..{MAX_ID_LENGTH} characters")
        if isinstance(item, str) and len(item) > MAX_TEXT_LENGTH:
            raise ValueError(f"attribute {key!r} is longer than {MAX_TEXT_LENGTH} characters")
        if isinstance(item, Decimal) and not item.is_finite():
            raise ValueError(f"attribute {key!r} must be a finite number")
    return value


Attributes = Annotated[
    dict[str, str | bool | Decimal],
    AfterValidator(_bounded_attributes),
    PlainSerializer(
        lambda d: {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in d.items()},
        when_used="json",
    ),
]
"""Free-form attributes (extended fields, event attributes): strings, booleans
or decimals. Numbers arrive as JSON numbers or numeric strings are kept as
strings; filters and KPIs convert on read."""


class StrictModel(BaseModel):
    """Base for every schema: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
        ser_json_timedelta="iso8601",
    )


def utc_iso(moment: datetime) -> str:
    """Canonical text form of a timestamp (UTC, microseconds), used in ids and outputs."""
    from datetime import timezone

    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
