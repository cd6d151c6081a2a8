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

A rank counts the entries ahead of a customer. Walking them all would cost O(rank), so each
partition also counts its entries per value bucket (LEADERBOARD_COUNT namespace, key ``<board prefix>
<bucket>``): a bucket holds the values with the same four leading digits (all values at or below
zero share one), so a board has some tens of thousands of buckets at most, and a rank is the sum of
the counts of the buckets ahead (the API keeps them in memory, in step with the store, summed in a
Fenwick tree: ``CountsMirror``) plus a walk of the customer's own bucket (``around``). The counts
change in the same write as the entries. A board is counted only if it was counted from its first
entry (a marker key, the bare board prefix, whose document ``{"d": 4}`` names the leading digits):
a board indexed before the counts existed keeps being walked, and one counted when buckets held
three digits (its marker ``{}``) keeps three.

The index follows the customer's progress in the same write as their state
(pipeline/read_index.py): open cycles change with each event, a closed cycle keeps its final
standing while it is one of the last ``CLOSED_CYCLES_KEPT`` closed cycles of that customer.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Iterator
from decimal import ROUND_FLOOR, Decimal
from heapq import merge
from typing import Any, NamedTuple

import orjson

from ..state.base import Changes, StateStore, key_id
from ..state.keys import Namespace

log = logging.getLogger("milestream.api")  # the counts mirror serves the API's ranks

SEP = "\x00"
SCALE = 10**6
OFFSET = 10**30
WIDTH = 31
CLOSED_CYCLES_KEPT = 3
# A bucket's values share their leading digits. Four: a million customers of the benchmark's
# amounts put about 11 entries in a partition's bucket (three digits: about 106, and a rank walked them).
LEADING_DIGITS = 4
LEGACY_LEADING_DIGITS = 3  # boards counted before the marker named its digits


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


def _split(key: str) -> tuple[str, str]:
    """(board prefix, descending value digits) of an entry key."""
    milestone_id, target_id, cycle, rest = key.split(SEP, 3)
    return f"{milestone_id}{SEP}{target_id}{SEP}{cycle}{SEP}", rest[:WIDTH]


def bucket(digits: str, leading: int = LEADING_DIGITS) -> str:
    """The bucket of an entry's descending value digits, as the smallest digits (the highest value) the
    bucket holds: so buckets sort as the board ranks, and a bucket's entries sort from its key on."""
    scaled = OFFSET - int(digits)
    if scaled <= 0:
        top = 0  # zero and every negative value: one bucket
    else:
        step = 10 ** max(len(str(scaled)) - leading, 0)
        top = min(scaled // step * step + step - 1, OFFSET)
    return f"{OFFSET - top:0{WIDTH}d}"


def _leading(marker: dict[str, Any]) -> int:
    """The leading digits a counted board's buckets share, from its marker's document."""
    leading = marker.get("d", LEGACY_LEADING_DIGITS)
    return leading if isinstance(leading, int) and 1 <= leading <= WIDTH else LEGACY_LEADING_DIGITS


def _counting(store: StateStore, prefix: str) -> int | None:
    """The leading digits of a counted board's buckets; None if the board is not counted."""
    marker = store.get(Namespace.LEADERBOARD_COUNT.key(prefix))
    return None if marker is None else _leading(marker)


def update(store: StateStore, removed: Iterable[str], added: Iterable[str]) -> None:
    """Remove entries the board holds and add entries it does not (read_index.py: the keys a
    customer loses and gains, in one call), then count them: a bucket's count is read and written
    once, and not at all when an entry moved within its bucket."""
    deltas: dict[str, int] = {}  # counter id (board prefix + bucket): entries gained
    counting: dict[str, int | None] = {}  # board prefix: its buckets' leading digits (None: not counted)
    for key in removed:
        prefix, digits = _split(key)
        store.delete(Namespace.LEADERBOARD.key(key))
        if prefix not in counting:
            counting[prefix] = _counting(store, prefix)
        leading = counting[prefix]
        if leading is not None:
            counter = prefix + bucket(digits, leading)
            deltas[counter] = deltas.get(counter, 0) - 1
    for key in added:
        prefix, digits = _split(key)
        leading = counting[prefix] if prefix in counting else _counting(store, prefix)
        if leading is None and next(store.scan(Namespace.LEADERBOARD, prefix), None) is None:
            # A new board (or one just emptied by this update): counted from its first entry on.
            store.put(Namespace.LEADERBOARD_COUNT.key(prefix), {"d": LEADING_DIGITS})
            leading = LEADING_DIGITS
        counting[prefix] = leading
        store.put(Namespace.LEADERBOARD.key(key), {})
        if leading is not None:
            counter = prefix + bucket(digits, leading)
            deltas[counter] = deltas.get(counter, 0) + 1
    for counter, delta in deltas.items():
        if delta == 0:
            continue
        counter_key = Namespace.LEADERBOARD_COUNT.key(counter)
        count = (store.get(counter_key) or {}).get("n", 0) + delta
        if count > 0:
            store.put(counter_key, {"n": count})
        else:
            store.delete(counter_key)


def put(store: StateStore, key: str) -> None:
    """Add an entry the board does not hold."""
    update(store, (), (key,))


def delete(store: StateStore, key: str) -> None:
    """Remove an entry the board holds."""
    update(store, (key,), ())


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


class BucketCounts:
    """A counted board's buckets on one partition, in board order, with their counts in a Fenwick
    tree: the entries ahead of a bucket are summed, and a bucket's count changes, in O(log buckets).
    A bucket emptied keeps its place (count 0); a bucket new since the tree was built waits beside
    it, summed by a scan, until ``NEW_BUCKETS_MAX`` of them ask for the tree to be built again
    (values growing through a cycle keep reaching buckets no one held)."""

    NEW_BUCKETS_MAX = 64

    def __init__(self, leading: int, counts: dict[str, int]) -> None:
        self.leading = leading  # the digits a bucket's values share
        self.buckets = sorted(counts)  # each bucket's smallest possible key (board prefix + bucket)
        self._place = {found: i for i, found in enumerate(self.buckets)}
        self._counts = [counts[found] for found in self.buckets]
        self._new: dict[str, int] = {}  # non-empty buckets without a place in the tree
        self._new_sorted: list[str] = []  # the same, in board order
        tree = [0, *self._counts]
        for i in range(1, len(tree)):  # the Fenwick tree of the counts, built in O(buckets)
            parent = i + (i & -i)
            if parent < len(tree):
                tree[parent] += tree[i]
        self._tree = tree

    def _before(self, i: int) -> int:
        """Entries in the placed buckets before buckets[i]."""
        total = 0
        while i > 0:
            total += self._tree[i]
            i -= i & -i
        return total

    def total(self) -> int:
        return self._before(len(self.buckets)) + sum(self._new.values())

    def ahead_of(self, start: str) -> tuple[int, Iterator[str]]:
        """Entries in the buckets before ``start``, and those buckets (the non-empty ones, the
        nearest first, read as they are iterated)."""
        i, k = bisect_left(self.buckets, start), bisect_left(self._new_sorted, start)
        ahead = self._before(i) + sum(self._new[found] for found in self._new_sorted[:k])
        return ahead, self._earlier(i, k)

    def _earlier(self, i: int, k: int) -> Iterator[str]:
        placed = (self.buckets[j] for j in range(i - 1, -1, -1) if self._counts[j])
        if k:
            yield from merge(placed, self._new_sorted[k - 1 :: -1], reverse=True)
        else:
            yield from placed

    def change(self, counter: str, count: int) -> bool:
        """Set a bucket's count; False once the buckets waiting for a place are too many (build the
        counts again)."""
        i = self._place.get(counter)
        if i is None:
            if count:
                if counter not in self._new:
                    insort(self._new_sorted, counter)
                self._new[counter] = count
            elif self._new.pop(counter, None) is not None:
                self._new_sorted.remove(counter)
            return len(self._new) <= self.NEW_BUCKETS_MAX
        delta, self._counts[i] = count - self._counts[i], count
        i += 1
        while i < len(self._tree):
            self._tree[i] += delta
            i += i & -i
        return True

    def as_dict(self) -> dict[str, int]:
        """The non-empty buckets' counts, in board order."""
        placed = {found: n for found, n in zip(self.buckets, self._counts) if n}
        return dict(sorted({**placed, **self._new}.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BucketCounts):
            return NotImplemented
        return self.leading == other.leading and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"BucketCounts(leading={self.leading}, {self.as_dict()})"


def bucket_counts(store: StateStore, milestone_id: str, target_id: str, cycle: int) -> BucketCounts | None:
    """The board's bucket counts on this partition; None if the board is not counted."""
    stored = _stored_counts(store, board_prefix(milestone_id, target_id, cycle))
    return None if stored is None else BucketCounts(*stored)


def _stored_counts(store: StateStore, prefix: str) -> tuple[int, dict[str, int]] | None:
    """A board's buckets' leading digits and count per bucket (by counter id) as stored; None if the
    board is not counted."""
    return _counted_boards(store, prefix).get(prefix)


def _counted_boards(store: StateStore, prefix: str = "") -> dict[str, tuple[int, dict[str, int]]]:
    """Every counted board whose prefix starts with ``prefix``: its buckets' leading digits and count
    per bucket, in one pass (a board's marker sorts before its buckets)."""
    boards: dict[str, tuple[int, dict[str, int]]] = {}
    for found, document in store.scan_documents(Namespace.LEADERBOARD_COUNT, prefix):
        if found.endswith(SEP):
            boards[found] = (_leading(document), {})
        elif (board := boards.get(found[:-WIDTH])) is not None:
            board[1][found] = document.get("n", 0)
    return boards


class CountsMirror:
    """One partition store's bucket counts, in memory and in step with every write to the store.

    A rank needs the counts of every partition on every request; reading them from RocksDB costs
    tens of milliseconds per partition and board (a scan and a JSON document per bucket, over the
    versions and tombstones of keys rewritten on every change). The mirror reads every counted board
    of the store once, when it is made (the API makes it as the partition is assigned, not on a
    request), then applies the store's writes to them (``StateStore.listen``): a rank reads exactly
    the committed counts, at the cost of a look-up and a Fenwick sum."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        # Board prefix: its buckets' leading digits and counts by counter id (a board not here is not counted).
        self._boards: dict[str, tuple[int, dict[str, int]]] = {}
        self._summed: dict[str, BucketCounts] = {}  # in step with _boards; built again when missing
        self._stale = False
        self._read()
        store.listen(self._written)

    def _read(self) -> None:
        self._boards = _counted_boards(self.store)
        self._summed.clear()
        self._stale = False

    def counts(self, milestone_id: str, target_id: str, cycle: int) -> BucketCounts | None:
        if self._stale:
            self._read()
        prefix = board_prefix(milestone_id, target_id, cycle)
        summed = self._summed.get(prefix)
        if summed is None:
            stored = self._boards.get(prefix)
            if stored is None:
                return None
            summed = self._summed[prefix] = BucketCounts(stored[0], dict(stored[1]))
        return summed

    def _written(self, changes: Changes) -> None:
        try:
            self._apply(changes)
        except Exception:  # never fail the write that called this: read the counts from the store again
            log.exception("leaderboard counts mirror: could not apply a write; reading the counts again")
            self._stale = True

    def _apply(self, changes: Changes) -> None:
        tag = Namespace.LEADERBOARD_COUNT.prefix
        for raw_key, raw_value in changes.items():
            if not raw_key.startswith(tag):
                continue
            counter = key_id(raw_key)
            if counter.endswith(SEP):  # a marker is the bare board prefix
                self._summed.pop(counter, None)
                if raw_value is None:
                    self._boards.pop(counter, None)
                elif counter not in self._boards:  # a new board: counted from its first entry on
                    self._boards[counter] = (_leading(orjson.loads(raw_value)), {})
                continue
            prefix = counter[:-WIDTH]
            stored = self._boards.get(prefix)
            if stored is None:
                continue  # not a counted board
            count = 0 if raw_value is None else orjson.loads(raw_value).get("n", 0)
            if count:
                stored[1][counter] = count
            else:
                stored[1].pop(counter, None)
            summed = self._summed.get(prefix)
            if summed is not None and not summed.change(counter, count):
                del self._summed[prefix]  # many buckets new to the mirror: sorted again when next asked


def around(
    store: StateStore,
    milestone_id: str,
    target_id: str,
    cycle: int,
    key: str,
    neighbours: int,
    counts: BucketCounts | None | bool = True,
) -> Around:
    """Where ``key`` stands in one partition's part of a board: the counts of the buckets ahead of
    its bucket (``counts``: read from the store when True) plus a walk of its bucket, or a walk of
    the whole board ahead of it when the board is not counted; and ``neighbours`` keys either side."""
    prefix = board_prefix(milestone_id, target_id, cycle)
    if counts is True:
        counts = bucket_counts(store, milestone_id, target_id, cycle)
    start, ahead = prefix, 0
    earlier_buckets: Iterator[str] = iter(())
    if isinstance(counts, BucketCounts):
        start = prefix + bucket(_split(key)[1], counts.leading)
        ahead, earlier_buckets = counts.ahead_of(start)
    above: deque[str] = deque(maxlen=max(neighbours, 0) or None)
    below: list[Entry] = []
    for found in store.scan(Namespace.LEADERBOARD, prefix, start=start):
        if found < key:
            ahead += 1
            if neighbours > 0:
                above.append(found)
        elif found == key:
            continue
        else:
            if len(below) >= neighbours:
                break
            below.append(parse(found))
    end = start
    for first in earlier_buckets:  # neighbours above in the buckets before the key's
        if len(above) >= neighbours:
            break
        earlier: deque[str] = deque(maxlen=neighbours - len(above))
        for found in store.scan(Namespace.LEADERBOARD, prefix, start=first):
            if found >= end:
                break
            earlier.append(found)
        above.extendleft(reversed(earlier))
        end = first
    return Around(ahead, [parse(k) for k in above] if neighbours > 0 else [], below)
