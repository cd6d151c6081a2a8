"""The read side's documents, kept in step with a customer's state in the same write.

``maintain`` is called by Topology.commit_result just before the customer's state is written. It
compares the customer's progress now with what it indexed last (the PROGRESS document, kept in
the state document under ``"ix"``) and writes only what changed:

* the customer's leaderboard keys (pipeline/leaderboards.py), for milestones with the
  ``leaderboard`` setting on;
* an entry in the milestone's contribution history (pipeline/history.py) for each cycle whose
  values this record changed, or into which it was refused as late.

The PROGRESS document (``state["ix"]``)::

    {"m": {milestone_id: {
        "o": {"<cycle>": {target_id: "value"}},   # open cycles (targets, and "group" on a leaderboard)
        "x": {"<cycle>": {target_id: "value"}},   # closed cycles still on the leaderboard
        "a": {"<cycle>": {target_id: "dec"}},     # returns carried into cycles not open yet
        "l": 1,                                    # its keys are in the leaderboard index
        "h": {"<cycle>": next history entry}}}      # pipeline/history.py

Only enrolled customers are indexed (progress kept for a customer who may enrol later is not
theirs yet). Everything here is derived from the state: a document lost in a crash is rebuilt
as the customer's state next changes, and the history keeps at most one entry per input offset.
The leaderboard keys are a function of the PROGRESS document alone (``board_keys``): they are
kept in the local store only, never sent to the changelog, and a restore derives them from the
state records it reads (``restored_board_changes``, batch by batch, onto a store that holds some;
``derived_board_entries``, once at the end, for a store restored from scratch).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from ..engine.core import Engine, Result, progress_value
from ..engine.measures import Accumulation, accumulation
from ..engine.registry import GROUP, Compiled
from ..state.base import EMPTY_DOCUMENT, StateStore, key_id, raw_prefix
from ..state.keys import PREFIX_BYTES, Customer, Namespace, StateKey
from . import history, leaderboards

if TYPE_CHECKING:
    from .topology import Record

Values = dict[str, str]

# Where the state document keeps what was last indexed (the PROGRESS document below): inside the
# state the caller writes anyway, so indexing costs no read or write of a document of its own.
INDEXED = "ix"
_NOTHING: dict[str, Any] = {}  # a milestone not indexed (read only)


def indexed(state: dict[str, Any] | None) -> dict[str, Any]:
    """Per milestone, what was last indexed for the customer whose state this is."""
    return ((state or {}).get(INDEXED) or {}).get("m", {})


def _fmt(value: Decimal) -> str:
    return format(value, "f")


def cycle_values(engine: Engine, compiled: Compiled, ms: dict[str, Any], cycle: dict[str, Any], index: int) -> Values:
    """Each target's value in a cycle (and the targets met, on a leaderboard of several targets)."""
    targets = cycle.get("t", {})
    values = {t.target_id: _value(targets.get(t.target_id, {}), accumulation(t.kpi)) for t in compiled.targets}
    if compiled.settings.leaderboard and not compiled.single_target:
        values[GROUP] = _fmt(engine.group_status(compiled, engine._progress(compiled, ms, cycle, index))[0])
    return values


def _milestone_index(
    engine: Engine, compiled: Compiled, ms: dict[str, Any], before: dict[str, Any]
) -> tuple[dict[str, Any], dict[int, dict[str, Any]], set[int]]:
    """(the milestone's new PROGRESS entry, value changes by cycle, cycles that closed now)."""
    opened: dict[str, Values] = {
        key: cycle_values(engine, compiled, ms, cycle, int(key)) for key, cycle in ms.get("c", {}).items()
    }
    was_open: dict[str, Values] = before.get("o", {})
    closed_kept: dict[str, Values] = dict(before.get("x", {}))
    changes: dict[int, dict[str, Any]] = {}
    closed_now: set[int] = set()
    for key, old in was_open.items():
        if key in opened:
            continue
        closed_now.add(int(key))
        final = dict(old)
        remembered = ms.get("h", {}).get(key)
        if remembered is not None:  # what the close kept (a till-achieved cycle closes at its last contribution)
            final = {target: remembered.get("t", {}).get(target, "0") for target in old}
        delta = _deltas(old, final)
        if delta:
            changes[int(key)] = {"d": delta}
        closed_kept[key] = final
    for key, values in opened.items():
        delta = _deltas(was_open.get(key, {}), values)
        if delta:
            changes[int(key)] = {"d": delta}
    carried_before: dict[str, Values] = before.get("a", {})
    carried = {key: dict(values) for key, values in ms.get("adj", {}).items()}
    for key, values in carried.items():
        grown = _deltas(carried_before.get(key, {}), values)
        if grown:
            changes.setdefault(_current(opened), {}).setdefault("carried", {})[key] = grown
    entry: dict[str, Any] = {"o": opened}
    if carried:
        entry["a"] = carried
    if compiled.settings.leaderboard:
        entry["l"] = 1
        if closed_kept:
            kept = sorted((k for k in closed_kept if k not in opened), key=int)[-leaderboards.CLOSED_CYCLES_KEPT :]
            if kept:
                entry["x"] = {k: closed_kept[k] for k in kept}
    return entry, changes, closed_now


def _value(progress: dict[str, Any], mode: Accumulation) -> str:
    """A target's progress as text. A sum without a starting balance is its stored text already
    (the engine writes sums formatted): the common case, read for every open cycle on every record."""
    if mode is Accumulation.SUM and "b" not in progress:
        return progress.get("v") or "0"
    return _fmt(progress_value(progress, mode))


def _current(opened: dict[str, Values]) -> int:
    return max((int(k) for k in opened), default=0)


def _deltas(old: Values, new: Values) -> Values:
    out = {}
    for target in new.keys() | old.keys():
        if target == GROUP:
            continue
        before, after = old.get(target, "0"), new.get(target, "0")
        if before == after:
            continue  # most targets of most cycles: the same text, no need to compare numbers
        change = Decimal(after) - Decimal(before)
        if change:
            out[target] = _fmt(change)
    return out


def _board_values(entry: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(cycle, target, value text) of each leaderboard key of a milestone's PROGRESS entry (a
    cycle is open or closed, never both, so each (cycle, target) appears once)."""
    found: set[tuple[str, str, str]] = set()
    if entry.get("l"):
        for part in ("o", "x"):
            for cycle, values in entry.get(part, {}).items():
                for target, value in values.items():
                    found.add((cycle, target, value))
    return found


def _board_keys(milestone_id: str, customer_id: str, values: set[tuple[str, str, str]]) -> set[str]:
    return {
        leaderboards.text_entry_key(milestone_id, target, int(cycle), value, customer_id)
        for cycle, target, value in values
    }


def _board_moves(
    milestone_id: str, customer_id: str, was: dict[str, Any], now: dict[str, Any]
) -> tuple[set[str], set[str]]:
    """The leaderboard keys a milestone's PROGRESS entry loses and gains from ``was`` to ``now``
    (a value written differently, "10" and "10.0", keeps its key)."""
    if now.get("l") and not was.get("l") and not now.get("x"):
        # Newly on the board (as at a customer's first event): keys gained only, none to compare.
        gained = {
            leaderboards.text_entry_key(milestone_id, target, int(cycle), value, customer_id)
            for cycle, values in now.get("o", {}).items()
            for target, value in values.items()
        }
        return set(), gained
    moved = _open_values_moved(was, now)
    if moved is None:
        old_values, new_values = _board_values(was), _board_values(now)
        old = _board_keys(milestone_id, customer_id, old_values - new_values)
        new = _board_keys(milestone_id, customer_id, new_values - old_values)
        return old - new, new - old
    # The common case: only open cycles' values changed; keys for those alone (two values of
    # different cycles or targets never share a key, so each pair is compared on its own).
    lost, gained = set(), set()
    for cycle, target, before, after in moved:
        index = int(cycle)
        old_key = leaderboards.text_entry_key(milestone_id, target, index, before, customer_id)
        new_key = leaderboards.text_entry_key(milestone_id, target, index, after, customer_id)
        if old_key != new_key:
            lost.add(old_key)
            gained.add(new_key)
    return lost, gained


def _open_values_moved(was: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, str, str, str]] | None:
    """(cycle, target, value before, value now) of each open value that changed, when nothing else
    did (both on a leaderboard, the same closed cycles, the same open cycles and targets); else None."""
    if not (was.get("l") and now.get("l")) or was.get("x") != now.get("x"):
        return None
    was_open, now_open = was.get("o", {}), now.get("o", {})
    if was_open.keys() != now_open.keys():
        return None
    moved = []
    for cycle, values in now_open.items():
        before = was_open[cycle]
        if before.keys() != values.keys():
            return None  # a target added or dropped (no edit does that today: read them all)
        for target, value in values.items():
            if before[target] != value:
                moved.append((cycle, target, before[target], value))
    return moved


def board_keys(customer_id: str, state: dict[str, Any] | None) -> set[str]:
    """The leaderboard keys (LEADERBOARD ids) a customer's state implies: those ``maintain`` left
    in the store when it wrote that state."""
    keys: set[str] = set()
    for milestone_id, entry in indexed(state).items():
        if entry.get("l"):
            keys |= _board_keys(milestone_id, customer_id, _board_values(entry))
    return keys


_STATE_PREFIXES = frozenset((Namespace.CUSTOMER.prefix, Namespace.ORG_CUSTOMER.prefix))
_DEFAULT_ORG_STATE = Namespace.CUSTOMER.prefix
_ENTRIES = Namespace.LEADERBOARD
_ON_A_BOARD = b'"l":1'  # in every encoded PROGRESS entry with leaderboard keys (and, rarely, elsewhere)


def restored_board_changes(changes: Mapping[bytes, bytes | None], store: StateStore) -> dict[bytes, bytes | None]:
    """The leaderboard keys to delete (None) and write when a restore writes ``changes`` (stored
    keys and values read from the changelog) over ``store``: for each customer state document, the
    keys its new version implies and its stored one did not, and the other way round."""
    out: dict[bytes, bytes | None] = {}
    state_keys = [raw_key for raw_key in changes if raw_key[:PREFIX_BYTES] in _STATE_PREFIXES]
    for raw_key, before in zip(state_keys, store._get_many(state_keys), strict=True):
        after = changes[raw_key]
        was_on, is_on = before is not None and _ON_A_BOARD in before, after is not None and _ON_A_BOARD in after
        if not (was_on or is_on):
            continue  # neither version is on a leaderboard: nothing to decode
        customer_id = _customer_id(raw_key)
        old = board_keys(customer_id, orjson.loads(before)) if was_on else set()  # type: ignore[arg-type]
        new = board_keys(customer_id, orjson.loads(after)) if is_on else set()  # type: ignore[arg-type]
        for key in old - new:
            out[raw_prefix(_ENTRIES, key)] = None
        for key in new - old:
            out[raw_prefix(_ENTRIES, key)] = EMPTY_DOCUMENT
    return out


def on_a_board(changes: Mapping[bytes, bytes | None]) -> bool:
    """Whether any value of ``changes`` may be a state document with leaderboard keys."""
    return any(value is not None and _ON_A_BOARD in value for value in changes.values())


def derived_board_entries(store: StateStore, batch: int) -> Iterator[dict[bytes, bytes | None]]:
    """Every leaderboard key the customer state documents in ``store`` imply, ``batch`` at a time:
    what a store restored from scratch lacks (its entries are not derived record by record, as
    ``restored_board_changes`` does: the last version of each document is read once)."""
    out: dict[bytes, bytes | None] = {}
    for namespace in (Namespace.CUSTOMER, Namespace.ORG_CUSTOMER):
        for raw_key, raw_value in store._scan_items(namespace.prefix):
            if _ON_A_BOARD not in raw_value:
                continue
            for key in board_keys(_customer_id(raw_key), orjson.loads(raw_value)):
                out[raw_prefix(_ENTRIES, key)] = EMPTY_DOCUMENT
            if len(out) >= batch:
                yield out
                out = {}
    if out:
        yield out


def _customer_id(raw_state_key: bytes) -> str:
    if raw_state_key.startswith(_DEFAULT_ORG_STATE):
        return key_id(raw_state_key)  # the default organisation's: the bare customer id
    return Customer.of_state_key(StateKey.decode(raw_state_key)).customer_id


def _describe(record: Record, document: dict[str, Any] | None) -> dict[str, Any]:
    event: Any = document
    if event is None:
        try:
            event = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            event = {}
    if not isinstance(event, dict):
        event = {}
    return {
        "src": record.source,
        "id": event.get("event_id"),
        "type": event.get("type", "unknown"),
        "at": event.get("event_time") or event.get("now"),
    }


def maintain(
    store: StateStore,
    engine: Engine,
    customer: Customer,
    state: dict[str, Any],
    result: Result,
    record: Record,
    *,
    history_per_cycle: int,
    history_cycles: int,
    document: dict[str, Any] | None = None,
) -> None:
    """Bring the customer's leaderboard keys and contribution history in line with ``state``
    (``document``: the record's value, if the caller decoded it already)."""
    milestones: dict[str, Any] = state.get("m", {})
    if not milestones:
        return
    stored = state.get(INDEXED)
    before: dict[str, Any] = (stored or {}).get("m", {})
    after: dict[str, Any] = {}
    late: dict[str, set[int]] = {}
    for event in result.late:
        late.setdefault(event.milestone_id, set()).add(event.cycle)
    described: dict[str, Any] | None = None
    for milestone_id, ms in milestones.items():
        compiled = engine.registry.milestones.get(milestone_id)
        if compiled is None:
            if milestone_id in before:
                after[milestone_id] = before[milestone_id]  # not defined here (yet): leave it as it was
            continue
        if not engine.is_enrolled(compiled, ms, customer.customer_id):
            continue
        indexed = before.get(milestone_id, {})
        entry, changes, _ = _milestone_index(engine, compiled, ms, indexed)
        counters = dict(indexed.get("h", {}))
        for cycle in late.get(milestone_id, ()):
            changes.setdefault(cycle, {})["late"] = True
        if changes and history_per_cycle > 0:
            described = described or _describe(record, document)
            entries = {cycle: {**described, **change} for cycle, change in changes.items()}
            history.record_contribution(
                store, customer, milestone_id, entries, counters, history_per_cycle, history_cycles
            )
        if counters:
            entry["h"] = counters
        after[milestone_id] = entry
    for milestone_id in before.keys() | after.keys():
        was, now = before.get(milestone_id, _NOTHING), after.get(milestone_id, _NOTHING)
        if not (was.get("l") or now.get("l")):
            continue  # no leaderboard
        lost, gained = _board_moves(milestone_id, customer.customer_id, was, now)
        if lost or gained:
            leaderboards.update(store, lost, gained)
    if after != before:
        state[INDEXED] = {"m": after}  # written with the state, by the caller
