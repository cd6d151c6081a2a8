"""A customer's recent contributions to a milestone, for ``GET .../history`` (the API).

One small document per entry, in the HISTORY namespace (state/keys.py), under
``<customer><milestone><cycle>:<slot>``: a cycle's entries take ``per_cycle`` slots in turn, the
newest overwriting the oldest (so a full cycle costs no deletion), and each entry carries its
sequence number ``n``, by which they are read back oldest first::

    entry = {"n": sequence, "src": "topic/partition/offset", "id": event id, "type": event type,
             "at": event time, "d": {target_id: "delta"}, "late": true?,
             "carried": {"<cycle>": {target_id: "dec"}}?}

An entry is what one input record changed in one cycle of the milestone: the change of each
target's value (``d``: a transaction's amount, a return's negative share, an enrolment's initial
balance or the activity counted at a mid-cycle enrolment), a return carried into a cycle that is
not open yet (``carried``), or an event refused as late (``late``: recorded after the cycle's
buffer, counted nowhere). It is written by pipeline/read_index.py in the same write as the
customer's state, and only when something changed.

Writing an entry costs one small write whatever the history holds: the next sequence number of
each cycle lives in what read_index.py keeps in the customer's state document, which is read
and written anyway.

Bounds: the last ``per_cycle`` entries of each cycle (``MILESTREAM_HISTORY_PER_CYCLE``, newest
kept) and the last ``cycles`` cycles with entries (``MILESTREAM_HISTORY_CYCLES``).
"""

from __future__ import annotations

from typing import Any

from ..state.base import StateStore
from ..state.keys import Customer, Namespace, StateKey

Counters = dict[str, int]  # per cycle (its index as text): the next entry's sequence number


def _prefix(customer: Customer, milestone_id: str) -> str:
    return f"{customer.qualified}{len(milestone_id)}:{milestone_id}"


def _key(customer: Customer, milestone_id: str, cycle: int, slot: int) -> StateKey:
    # zfill, not a format spec: the same digits (a sign first), at half the cost compiled (a key a record).
    return Namespace.HISTORY.key(f"{_prefix(customer, milestone_id)}{str(cycle).zfill(10)}:{str(slot).zfill(6)}")


def record_contribution(
    store: StateStore,
    customer: Customer,
    milestone_id: str,
    entries: dict[int, dict[str, Any]],
    counters: Counters,
    per_cycle: int,
    cycles: int,
) -> None:
    """Append one record's entry to each of the given cycles, within the bounds (``counters`` is
    updated in place: the caller keeps it)."""
    if per_cycle <= 0 or not entries:
        return
    for cycle, entry in entries.items():
        seq = counters.get(str(cycle), 0)
        store.put(_key(customer, milestone_id, cycle, seq % per_cycle), {"n": seq, **entry})
        counters[str(cycle)] = seq + 1
    if len(counters) <= max(cycles, 1):
        return  # within the bound (nearly always: a sort per record would cost more than the write)
    for old in sorted(counters, key=int)[: -max(cycles, 1)]:
        for slot in range(min(counters[old], per_cycle)):
            store.delete(_key(customer, milestone_id, int(old), slot))
        del counters[old]


def read(store: StateStore, customer: Customer, milestone_id: str) -> dict[str, list[dict[str, Any]]]:
    """The kept entries by cycle (a cycle's key is its index as text), oldest first."""
    prefix = _prefix(customer, milestone_id)
    kept: dict[str, list[dict[str, Any]]] = {}
    for id in store.scan(Namespace.HISTORY, prefix):
        cycle = str(int(id[len(prefix) :].split(":", 1)[0]))
        entry = store.get(Namespace.HISTORY.key(id))
        if entry is not None:
            kept.setdefault(cycle, []).append(entry)
    for entries in kept.values():
        entries.sort(key=lambda entry: entry.get("n", 0))
    return kept
