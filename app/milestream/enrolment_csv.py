"""``milestream enrol``: a CSV of customers (and their own targets) as enrolment events.

The spec's "specific customers" audience can come as a CSV of customer ids with
per-customer, and optionally per-cycle, target and sub-target values. Columns:

* ``customer_id`` (required);
* ``<target_id>``: the customer's value of that target, every cycle;
* ``<target_id>@<cycle>``: the value for one cycle only (fixed calendar windows);
* ``<target_id>:<sub-target name>``: the customer's value of a sub-target;
* ``+<target_id>``: the customer's initial balance on that target, the progress
  they start the cycle with (it counts towards the target and its sub-targets).

Empty cells are left out. ``--cycle NAME`` enrols every row into that cycle (a
custom period's name, the name outputs give a cycle, or ``#<n>``) and
``--reenrol resume|reset`` says what a re-enrolment after an unenrolment does
with the earlier progress (default: resume). Each row becomes one ``enrolment`` event on the
enrolments topic, keyed by the customer, with a deterministic ``event_id``
(milestone, customer, the row's targets, balances and options; not the sending time), so
sending the same file twice changes nothing. A bad row is reported with its
line number and the reason, and the other rows are still sent; the command
then exits 1. A file that cannot be used at all (not UTF-8, not CSV, a column
naming a target the milestone does not have, an unknown milestone or cycle) is
reported in one line and nothing is sent; the command exits 2.

The milestone and its targets are checked against the definitions the workers
have: the definitions topic, read to its end, or ``--definitions FILE``
(JSON or JSON lines, as for ``milestream simulate``) to work without a broker.

    milestream enrol --milestone m-gold --csv audience.csv [--at 2024-02-10T00:00:00+05:30]
                     [--cycle Summer] [--reenrol reset] [--dry-run]
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from .engine.cycles import named_window
from .engine.registry import Compiled
from .errors import UsageError
from .schemas.base import utc_iso
from .schemas.codec import describe_validation_error
from .schemas.inputs import Enrolment


def enrolments_from_csv(
    text: str,
    milestone_id: str,
    at: datetime,
    milestone: Compiled | None = None,
    *,
    cycle: str | None = None,
    reenrol: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """(enrolment events, errors as "line N: reason") for a CSV audience, each enrolling into ``cycle``
    (if given) with ``reenrol`` (if given).

    Raises ``UsageError`` for a file the csv module cannot read (a cell over its size limit) and,
    given the ``milestone``, for a column naming a target it does not have or a cycle it cannot take."""
    options = {k: v for k, v in (("cycle", cycle), ("reenrol", reenrol)) if v is not None}
    if milestone is not None and cycle is not None:
        check_cycle(milestone, cycle, at)
    reader = csv.DictReader(io.StringIO(text))
    events, errors = [], []
    try:
        if not reader.fieldnames or "customer_id" not in reader.fieldnames:
            return [], ["line 1: the header must have a customer_id column"]
        if milestone is not None:
            check_columns(milestone, list(reader.fieldnames))
        for row in reader:
            try:
                events.append(_enrolment(row, milestone_id, at, options))
            except ValueError as exc:
                reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
                errors.append(f"line {reader.line_num}: {reason}")
    except csv.Error as exc:
        raise UsageError(f"line {reader.line_num + 1}: not a readable CSV row ({exc})") from None
    return events, errors


def _enrolment(row: dict[str, str | None], milestone_id: str, at: datetime, options: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "enrolment",
        "customer_id": (row.get("customer_id") or "").strip(),
        "milestone_id": milestone_id,
        "targets": _targets(row),
        **options,
    }
    balances = _balances(row)
    if balances:
        body["initial_balance"] = balances
    # The id depends on what the row says, not on when it is sent: sending the file again is recognised.
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    body["event_id"] = f"csv:{milestone_id}:{body['customer_id']}:{digest}"
    body["event_time"] = utc_iso(at)
    return Enrolment.model_validate(body).model_dump(mode="json", exclude_none=True)


def check_columns(milestone: Compiled, columns: list[str] | None) -> None:
    """Raise ``UsageError`` for a column naming a target (or sub-target) the milestone does not have."""
    targets = {t.target_id: t for t in milestone.targets}
    mid = milestone.definition.milestone_id
    for column in columns or ():
        if column == "customer_id":
            continue
        target_id, _, sub_name = column.removeprefix(BALANCE_PREFIX).partition(":")
        target_id = target_id.split("@", 1)[0]
        target = targets.get(target_id)
        if target is None:
            raise UsageError(
                f"column {column!r}: milestone {mid!r} has no target {target_id!r} "
                f"(its targets: {', '.join(sorted(targets))})"
            )
        names = [s.name for s in target.sub_targets]
        if sub_name and sub_name not in names:
            raise UsageError(
                f"column {column!r}: target {target_id!r} of {mid!r} has no sub-target {sub_name!r} "
                f"(its sub-targets: {', '.join(names) or 'none'})"
            )


def check_cycle(milestone: Compiled, cycle: str, at: datetime) -> None:
    """Raise ``UsageError`` for a cycle the milestone does not have, or one that ended before ``at``."""
    window = named_window(milestone.definition, cycle)
    mid = milestone.definition.milestone_id
    if window is None:
        raise UsageError(
            f"--cycle {cycle!r}: milestone {mid!r} has no such cycle (the name of a calendar or custom cycle, or #<n>)"
        )
    if window.end is not None and window.end <= at:
        raise UsageError(f"--cycle {cycle!r}: that cycle of {mid!r} ended at {utc_iso(window.end)}, before --at")


BALANCE_PREFIX = "+"


def _balances(row: dict[str, str | None]) -> dict[str, str]:
    """The ``+<target_id>`` cells: the progress the customer starts with, per target."""
    for column in row:
        if column is not None and column.startswith(BALANCE_PREFIX) and ("@" in column or ":" in column):
            raise ValueError(
                f"column {column!r}: an initial balance is per target, for the cycle enrolled into "
                "(no '@<cycle>' or ':<sub-target>')"
            )
    return {
        column.removeprefix(BALANCE_PREFIX): cell.strip()
        for column, cell in row.items()
        if column is not None and column.startswith(BALANCE_PREFIX) and cell and cell.strip()
    }


def _targets(row: dict[str, str | None]) -> list[dict[str, Any]]:
    overrides: dict[tuple[str, int | None], dict[str, Any]] = {}
    subs: dict[str, dict[str, str]] = {}
    for column, cell in row.items():
        if column is None:
            raise ValueError("more cells than header columns")
        cell = (cell or "").strip()
        if column == "customer_id" or column.startswith(BALANCE_PREFIX) or not cell:
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
