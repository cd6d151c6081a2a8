"""A customer's recent contributions to a milestone, for ``GET .../history`` (the API).

One document per customer and milestone in the HISTORY namespace (state/keys.py)::

    {"c": {"<cycle>": [entry, ...]}}   # oldest first

    entry = {"src": "topic/partition/offset", "id": event id, "type": event type,
             "at": event time, "d": {target_id: "delta"}, "late": true?,
             "carried": {"<cycle>": {target_id: "dec"}}?}

An entry is what one input record changed in one cycle of the milestone: the change of each
target's value (``d``: a transaction's amount, a return's negative share, an enrolment's initial
balance or the activity counted at a mid-cycle enrolment), a return carried into a cycle that is
not open yet (``carried``), or an event refused as late (``late``: recorded after the cycle's
buffer, counted nowhere). It is written by pipeline/read_index.py in the same write as the
customer's state, and only when something changed.

Bounds: the last ``per_cycle`` entries of each cycle (``MILESTREAM_HISTORY_PER_CYCLE``, newest
kept) and the last ``cycles`` cycles with entries (``MILESTREAM_HISTORY_CYCLES``). An entry from
the same input offset replaces the earlier one (a record applied again after a crash).
"""

from __future__ import annotations

from typing import Any

from ..state.base import StateStore
from ..state.keys import Customer


def record_contribution(
    store: StateStore,
    customer: Customer,
    milestone_id: str,
    entries: dict[int, dict[str, Any]],
    per_cycle: int,
    cycles: int,
) -> None:
    """Append one record's entry to each of the given cycles, within the bounds."""
    if per_cycle <= 0 or not entries:
        return
    key = customer.history_key(milestone_id)
    document = store.get(key) or {"c": {}}
    kept: dict[str, list[dict[str, Any]]] = document["c"]
    for cycle, entry in entries.items():
        items = [e for e in kept.get(str(cycle), []) if e.get("src") != entry.get("src")]
        items.append(entry)
        kept[str(cycle)] = items[-per_cycle:]
    for old in sorted(kept, key=int)[: -max(cycles, 1)]:
        del kept[old]
    store.put(key, document)


def read(store: StateStore, customer: Customer, milestone_id: str) -> dict[str, list[dict[str, Any]]]:
    """The kept entries by cycle (a cycle's key is its index as text)."""
    return (store.get(customer.history_key(milestone_id)) or {}).get("c", {})
