"""Leaderboard index: one key per (milestone, target, cycle, customer), ordered for a prefix scan.

A milestone with the ``leaderboard`` setting on (organisation or milestone settings) keeps, on
each partition, a key per enrolled customer, target (and ``group``, the targets met, for a
milestone of several targets) and cycle, in the LEADERBOARD namespace (state/keys.py)::

    <milestone id> NUL <target id> NUL <cycle, 3 digits> NUL <descending value, 31 digits> NUL <customer id>

Ids never contain NUL (schemas/base.py refuses control characters), so the part before the value
names exactly one board, and a scan of that prefix visits the board's customers from the highest
value down, ties by customer id: the top N of a partition is its first N keys. The value is
``10**30 - value * 10**6`` (amounts have six decimals), so higher values sort first and negative
values (a return carried into a cycle) sort last. A board is global across partitions: the API
merges the partitions' heads (api/leaderboards.py). Keys only: the value is read back from the key.

The index follows the customer's progress in the same write as their state
(pipeline/read_index.py): open cycles change with each event, a closed cycle keeps its final
standing while it is one of the last ``CLOSED_CYCLES_KEPT`` closed cycles of that customer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from decimal import ROUND_FLOOR, Decimal
from typing import NamedTuple

from ..state.base import StateStore
from ..state.keys import Namespace

SEP = "\x00"
SCALE = 10**6
OFFSET = 10**30
WIDTH = 31
CLOSED_CYCLES_KEPT = 3


class Entry(NamedTuple):
    key: str  # the id in the LEADERBOARD namespace: sorts as the board ranks
    value: Decimal
    customer_id: str


def board_prefix(milestone_id: str, target_id: str, cycle: int) -> str:
    return f"{milestone_id}{SEP}{target_id}{SEP}{cycle:03d}{SEP}"


def _descending(value: Decimal) -> str:
    scaled = int((value * SCALE).to_integral_value(rounding=ROUND_FLOOR))
    return f"{min(max(OFFSET - scaled, 0), 2 * OFFSET - 1):0{WIDTH}d}"


def entry_key(milestone_id: str, target_id: str, cycle: int, value: Decimal, customer_id: str) -> str:
    return f"{board_prefix(milestone_id, target_id, cycle)}{_descending(value)}{SEP}{customer_id}"


def parse(key: str) -> Entry:
    _, _, _, inverted, customer_id = key.split(SEP, 4)
    value = Decimal(OFFSET - int(inverted)).scaleb(-6)
    return Entry(key, value.normalize() if value else Decimal(0), customer_id)


def value_text(value: Decimal) -> str:
    return format(value, "f")


def put(store: StateStore, key: str) -> None:
    store.put(Namespace.LEADERBOARD.key(key), {})


def delete(store: StateStore, key: str) -> None:
    store.delete(Namespace.LEADERBOARD.key(key))


def head(store: StateStore, milestone_id: str, target_id: str, cycle: int, limit: int) -> list[Entry]:
    """The first ``limit`` entries of one partition's part of a board."""
    out: list[Entry] = []
    if limit <= 0:
        return out
    for key in store.scan(Namespace.LEADERBOARD, board_prefix(milestone_id, target_id, cycle)):
        out.append(parse(key))
        if len(out) >= limit:
            break
    return out


class Around(NamedTuple):
    ahead: int  # entries of this partition that rank before the key
    above: list[Entry]  # the nearest of them, best first (at most ``neighbours``)
    below: list[Entry]  # the entries right after the key, best first


def around(store: StateStore, milestone_id: str, target_id: str, cycle: int, key: str, neighbours: int) -> Around:
    """Where ``key`` stands in one partition's part of a board: a walk of the index keys ahead of it
    (never of customers' state) plus ``neighbours`` keys after it."""
    prefix = board_prefix(milestone_id, target_id, cycle)
    ahead = 0
    above: deque[Entry] = deque(maxlen=max(neighbours, 0) or None)
    below: list[Entry] = []
    keys: Iterator[str] = store.scan(Namespace.LEADERBOARD, prefix)
    for found in keys:
        if found < key:
            ahead += 1
            if neighbours > 0:
                above.append(parse(found))
        elif found == key:
            continue
        else:
            if len(below) >= neighbours:
                break
            below.append(parse(found))
    return Around(ahead, list(above) if neighbours > 0 else [], below)
