"""Evaluation of scope-rule filters (see :mod:`milestream.schemas.filters`).

Plain tree walking over already-validated data: no ``eval``, no attribute
access beyond the dicts and models the engine hands in.
"""

from __future__ import annotations

from typing import Any

from ..schemas.filters import AllOf, AnyOf, Condition, Filter, as_number


def evaluate(node: Filter, context: dict[str, Any]) -> bool:
    """Evaluate a filter against ``context`` (root name -> dict of fields).

    A missing field fails every comparison except ``ne``/``not_in``/``exists: false``.
    """
    if isinstance(node, Condition):
        return _compare(node, _resolve(context, node.field))
    if isinstance(node, AllOf):
        return all(evaluate(child, context) for child in node.all)
    if isinstance(node, AnyOf):
        return any(evaluate(child, context) for child in node.any)
    return not evaluate(node.not_, context)


_MISSING = object()


def _resolve(context: dict[str, Any], path: str) -> Any:
    current: Any = context
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif part == "net_amount" and hasattr(current, "net"):
            current = current.net  # no net_amount means paid in full: net equals gross
        else:
            current = getattr(current, part, _MISSING)
        if current is _MISSING or current is None:
            return _MISSING
    return current


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right or (isinstance(left, bool) and isinstance(right, bool) and left == right)
    if isinstance(left, str) and isinstance(right, str):
        # Text against text is compared as text: codes such as SKU "00123" and
        # "123" differ. A number on either side makes it a numeric comparison.
        return left == right
    a, b = as_number(left), as_number(right)
    if a is not None and b is not None:
        return a == b
    return str(left) == str(right)


def _compare(cond: Condition, actual: Any) -> bool:
    op = cond.op
    if op == "exists":
        present = actual is not _MISSING
        return present if cond.value in (None, True) else not present
    if actual is _MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return _equal(actual, cond.value)
    if op == "ne":
        return not _equal(actual, cond.value)
    if op == "in":
        return any(_equal(actual, v) for v in cond.value)
    if op == "not_in":
        return not any(_equal(actual, v) for v in cond.value)
    if op == "contains":
        return str(cond.value) in str(actual)
    a, b = as_number(actual), as_number(cond.value)
    if a is None or b is None:
        return False
    if op == "gt":
        return a > b
    if op == "gte":
        return a >= b
    if op == "lt":
        return a < b
    return a <= b
