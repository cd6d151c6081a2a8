"""``milestream enrol``: a CSV of customers (and their own targets) as enrolment events.

The spec's "specific customers" audience can come as a CSV of customer ids with
per-customer, and optionally per-cycle, target and sub-target values. Columns:

* ``customer_id`` (required);
* ``<target_id>``: the customer's value of that target, every cycle;
* ``<target_id>@<cycle>``: the value for one cycle only (fixed calendar windows);
* ``<target_id>:<sub-target name>``: the customer's value of a sub-target.

Empty cells are left out. Each row becomes one ``enrolment`` event on the
enrolments topic, keyed by the customer, with a deterministic ``event_id``
(milestone, customer, row content), so sending the same file twice changes
nothing. A bad row is reported with its line number and the reason, and the
other rows are still sent; the command then exits 1.

    milestream enrol --milestone m-gold --csv audience.csv [--at 2024-02-10T00:00:00+05:30] [--dry-run]
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from .schemas.base import utc_iso
from .schemas.codec import describe_validation_error
from .schemas.inputs import Enrolment


def enrolments_from_csv(text: str, milestone_id: str, at: datetime) -> tuple[list[dict[str, Any]], list[str]]:
    """(enrolment events, errors as "line N: reason") for a CSV audience."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "customer_id" not in reader.fieldnames:
        return [], ["line 1: the header must have a customer_id column"]
    events, errors = [], []
    for line, row in enumerate(reader, start=2):
        try:
            targets = _targets(row)
            body = {
                "type": "enrolment",
                "customer_id": (row.get("customer_id") or "").strip(),
                "event_time": utc_iso(at),
                "milestone_id": milestone_id,
                "targets": targets,
            }
            digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
            body["event_id"] = f"csv:{milestone_id}:{body['customer_id']}:{digest}"
            events.append(Enrolment.model_validate(body).model_dump(mode="json", exclude_none=True))
        except ValueError as exc:
            reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            errors.append(f"line {line}: {reason}")
    return events, errors


def _targets(row: dict[str, str | None]) -> list[dict[str, Any]]:
    overrides: dict[tuple[str, int | None], dict[str, Any]] = {}
    subs: dict[str, dict[str, str]] = {}
    for column, cell in row.items():
        if column is None:
            raise ValueError("more cells than header columns")
        cell = (cell or "").strip()
        if column == "customer_id" or not cell:
            continue
        if ":" in column:
            target_id, sub_name = column.split(":", 1)
            subs.setdefault(target_id, {})[sub_name] = cell
        elif "@" in column:
            target_id, cycle = column.split("@", 1)
            if not cycle.isdigit():
                raise ValueError(f"column {column!r}: the cycle after '@' must be a number")
            overrides[(target_id, int(cycle))] = {"target_id": target_id, "value": cell, "cycle": int(cycle)}
        else:
            overrides[(column, None)] = {"target_id": column, "value": cell}
    for target_id, values in subs.items():
        if (target_id, None) not in overrides:
            raise ValueError(f"sub-target values for {target_id!r} need its target value in column {target_id!r}")
        overrides[(target_id, None)]["sub_targets"] = values
    return list(overrides.values())
