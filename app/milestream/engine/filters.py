"""Evaluation of scope-rule filters (see :mod:`milestream.schemas.filters`).

Plain tree walking over already-validated data: no ``eval``, no attribute
access beyond the dicts and models the engine hands in. A filter is compiled
once per definition (:func:`compile_filter`) into a predicate: field paths are
split and constants converted once, not for every event.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..schemas.filters import AllOf, AnyOf, Condition, Filter, as_number

Predicate = Callable[[dict[str, Any]], bool]


def evaluate(node: Filter, context: dict[str, Any]) -> bool:
    """Evaluate a filter against ``context`` (root name -> dict of fields).

    A missing field fails every comparison except ``ne``/``not_in``/``exists: false``.
    """
    return compile_filter(node)(context)


def compile_filter(node: Filter) -> Predicate:
    """``node`` as a predicate over a context (root name -> dict of fields), as ``evaluate`` judges it."""
    if isinstance(node, Condition):
        return _compile_condition(node)
    if isinstance(node, AllOf):
        children = tuple(compile_filter(child) for child in node.all)
        return lambda context: all(child(context) for child in children)
    if isinstance(node, AnyOf):
        options = tuple(compile_filter(child) for child in node.any)
        return lambda context: any(option(context) for option in options)
    negated = compile_filter(node.not_)
    return lambda context: not negated(context)


_MISSING = object()


def _resolve(context: dict[str, Any], parts: tuple[str, ...]) -> Any:
    current: Any = context
    for part in parts:
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif part == "net_amount" and hasattr(current, "net"):
            current = current.net  # no net_amount means paid in full: net equals gross
        else:
            current = getattr(current, part, _MISSING)
        if current is _MISSING or current is None:
            return _MISSING
    return current


def _equal(left: Any, right: Any, right_number: Decimal | None) -> bool:
    """Whether ``left`` equals the constant ``right`` (``right_number``: ``as_number(right)``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right or (isinstance(left, bool) and isinstance(right, bool) and left == right)
    if isinstance(left, str) and isinstance(right, str):
        # Text against text is compared as text: codes such as SKU "00123" and
        # "123" differ. A number on either side makes it a numeric comparison.
        return left == right
    a = as_number(left)
    if a is not None and right_number is not None:
        return a == right_number
    return str(left) == str(right)


class _Members:
    """The constants of an ``in`` / ``not_in`` list: text ones in a set (text matches text as
    text, so a text value is found by look-up), the others compared one by one."""

    def __init__(self, values: list[Any]) -> None:
        self.texts = frozenset(v for v in values if isinstance(v, str))
        self.others = tuple((v, as_number(v)) for v in values if not isinstance(v, str))
        self.all = tuple((v, as_number(v)) for v in values)

    def __contains__(self, actual: Any) -> bool:
        if isinstance(actual, str):
            return actual in self.texts or any(_equal(actual, v, n) for v, n in self.others)
        return any(_equal(actual, v, n) for v, n in self.all)


def _compile_condition(cond: Condition) -> Predicate:
    parts = tuple(cond.field.split("."))
    op, value = cond.op, cond.value

    if op == "exists":
        wanted = value in (None, True)
        return lambda context: (_resolve(context, parts) is not _MISSING) is wanted

    def test(actual_test: Callable[[Any], bool], when_missing: bool) -> Predicate:
        def predicate(context: dict[str, Any]) -> bool:
            actual = _resolve(context, parts)
            return when_missing if actual is _MISSING else actual_test(actual)

        return predicate

    if op in ("eq", "ne"):
        number = as_number(value)
        if op == "eq":
            return test(lambda actual: _equal(actual, value, number), False)
        return test(lambda actual: not _equal(actual, value, number), True)
    if op in ("in", "not_in"):
        members = _Members(value)
        if op == "in":
            return test(lambda actual: actual in members, False)
        return test(lambda actual: actual not in members, True)
    if op == "contains":
        text = str(value)
        return test(lambda actual: text in str(actual), False)
    bound = as_number(value)
    compare: Callable[[Decimal, Decimal], bool] = {
        "gt": Decimal.__gt__,
        "gte": Decimal.__ge__,
        "lt": Decimal.__lt__,
        "lte": Decimal.__le__,
    }[op]

    def ordered(actual: Any) -> bool:
        number = as_number(actual)
        return number is not None and bound is not None and compare(number, bound)

    return test(ordered, False)
