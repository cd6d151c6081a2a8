"""Strict building blocks shared by every event schema.

Amounts are decimals (never floats). Timestamps are ISO 8601 text with a
timezone and dates ISO 8601 ``YYYY-MM-DD`` (epoch numbers are rejected), both
from 1970-01-01 up to 2200-01-01, so no date arithmetic behind validation can
overflow. Ids are non-empty bounded strings of visible characters. Free-form
maps are bounded so one producer bug cannot blow up a worker's memory.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 2000
MAX_ATTRIBUTES = 64
MAX_LINE_ITEMS = 500

# Code points that are invisible or change how text around them is shown: an id holding one
# looks like another id, or hides what it is. The Unicode Default_Ignorable_Code_Point ranges
# not already in the categories below (variation selectors, Hangul fillers, tags, ...).
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_BIDI_CONTROLS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
_HIDDEN_CATEGORIES = {
    "Cc": "control character",
    "Cf": "invisible format character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
    "Cs": "surrogate",
}


def hidden_character(text: str) -> str | None:
    """``"U+XXXX (what it is)"`` for the first control, bidi or invisible character in ``text``."""
    if text.isascii() and text.isprintable():
        return None  # the common case, without a look at each character
    for char in text:
        point = ord(char)
        kind: str | None
        if point in _BIDI_CONTROLS:
            kind = "bidirectional control character"
        else:
            kind = _HIDDEN_CATEGORIES.get(unicodedata.category(char))
            if kind is None and any(low <= point <= high for low, high in _INVISIBLE_RANGES):
                kind = "invisible character"
        if kind is not None:
            return f"U+{point:04X} ({kind})"
    return None


def _visible_id(value: Any) -> Any:
    if type(value) is str and value.isascii() and value.isprintable():
        return value  # the common case, without a second call (four ids are checked per input record)
    found = hidden_character(value) if isinstance(value, str) else None
    if found is not None:
        raise PydanticCustomError("id_character", "contains {found}", {"found": found})
    return value


DEFAULT_ORG = "default"
"""The organisation of an input or definition that names none."""

Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\s].*[^\s]$|^[^\s]$"),
    BeforeValidator(_visible_id),  # runs first, so the message names the character
    Field(description="Visible characters only: no control, bidirectional-control or invisible characters"),
]
"""A non-empty identifier without leading or trailing whitespace, control characters
(C0, DEL, C1), bidirectional controls, line or paragraph separators, or other invisible
characters (zero-width spaces and joiners, byte order mark, variation selectors, ...)."""

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[^\s].*[^\s]$|^[^\s]$"),
]
"""A display name; leading/trailing spaces are rejected, as the spec requires."""

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]


# Decimals travel as JSON strings ("12.50") or numbers on input and always as
# strings on output, so no consumer silently rounds them through a float. NaN and infinities
# are refused by pydantic's own decimal validator ("finite_number"), with no Python call.
Amount = Annotated[
    Decimal,
    Field(max_digits=24, decimal_places=6),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
NonNegativeAmount = Annotated[Amount, Field(ge=0)]
PositiveAmount = Annotated[Amount, Field(gt=0)]

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
END_OF_RANGE = datetime(2200, 1, 1, tzinfo=timezone.utc)
"""Timestamps and dates must lie in [EARLIEST, END_OF_RANGE): far enough from the ends of
Python's calendar that cycles, buffer days and time zones never overflow it."""

_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RANGE_TEXT = f"{EARLIEST:%Y-%m-%d} up to (not including) {END_OF_RANGE:%Y-%m-%d}"


def _iso_datetime_text(value: Any) -> Any:
    # datetime objects come from code; producers send text (epoch numbers are not ISO 8601).
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATETIME.match(value)):
        return value
    raise PydanticCustomError(
        "iso_datetime",
        "must be an ISO 8601 date-time with a timezone such as 2026-05-01T10:00:00+05:30, got {got}",
        {"got": repr(value)[:40]},
    )


def _in_range(value: datetime) -> datetime:
    if EARLIEST.year < value.year < END_OF_RANGE.year - 1:
        return value  # a day from either end whatever the offset: no comparison of aware datetimes
    if not EARLIEST <= value < END_OF_RANGE:
        raise PydanticCustomError(
            "timestamp_range", "must be from {range}, got {got}", {"range": _RANGE_TEXT, "got": value.isoformat()}
        )
    return value


def _iso_date_text(value: Any) -> Any:
    if (isinstance(value, date) and not isinstance(value, datetime)) or (
        isinstance(value, str) and _ISO_DATE.fullmatch(value)
    ):
        return value
    raise PydanticCustomError(
        "iso_date", "must be an ISO 8601 date such as 2026-05-01, got {got}", {"got": repr(value)[:40]}
    )


def _day_in_range(value: date) -> date:
    if not EARLIEST.date() <= value < END_OF_RANGE.date():
        raise PydanticCustomError(
            "date_range", "must be from {range}, got {got}", {"range": _RANGE_TEXT, "got": value.isoformat()}
        )
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_datetime_text),
    AfterValidator(_in_range),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": f"ISO 8601 date-time with a timezone, from {_RANGE_TEXT} (UTC)",
        }
    ),
]
"""A moment a producer sends: ISO 8601 text with a timezone, within the supported range."""

Day = Annotated[
    date,
    BeforeValidator(_iso_date_text),
    AfterValidator(_day_in_range),
    WithJsonSchema({"type": "string", "format": "date", "description": f"ISO 8601 date, from {_RANGE_TEXT}"}),
]
"""A calendar day a producer sends: ISO 8601 ``YYYY-MM-DD``, within the supported range."""

OutputTimestamp = AwareDatetime
"""A moment Milestream writes (UTC, ISO 8601). Cycles computed from in-range input may end
after the input range, so outputs are not bounded by it."""

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
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
