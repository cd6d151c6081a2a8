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

A rank counts the entries ahead of a customer. Walking them all would cost O(rank), so the API
counts each partition's entries per value bucket in memory: a bucket holds the values with the same
four leading digits (all values at or below zero share one; ``bucket``), so a board has some tens of thousands of
buckets at most, and a rank is the sum of the counts of the buckets ahead (summed in a Fenwick tree:
``BucketCounts``) plus a walk of the customer's own bucket (``around``). The counts are derived, never
stored: ``CountsMirror`` reads them from the entries when a partition is assigned (a slice at a
time), then follows every write to the store (the keys gained and lost), so an event pays for its
entry keys alone, not for counts read, written and sent to the changelog with them. (Stores written
before kept counts in the LEADERBOARD_COUNT namespace; those documents are no longer read or written.)

The index follows the customer's progress in the same write as their state
(pipeline/read_index.py): open cycles change with each event, a closed cycle keeps its final
standing while it is one of the last ``CLOSED_CYCLES_KEPT`` closed cycles of that customer.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Iterator
from decimal import Decimal
from heapq import merge
from typing import NamedTuple

from ..state.base import EMPTY_DOCUMENT, Changes, Existed, StateStore, key_id
from ..state.keys import Namespace

log = logging.getLogger("milestream.api")  # the counts mirror serves the API's ranks

SEP = "\x00"
SCALE = 10**6
OFFSET = 10**30
WIDTH = 31
CLOSED_CYCLES_KEPT = 3
_ENTRY = Namespace.LEADERBOARD.prefix  # an entry's stored key: this, then the key's UTF-8 bytes
_DIGITS = f"%0{WIDTH}d"  # an entry's value digits
# A bucket's values share their leading digits. Four: a million customers of the benchmark's
# amounts put about 11 entries in a partition's bucket (three digits: about 106, and a rank walked them).
LEADING_DIGITS = 4


class Entry(NamedTuple):
    key: str  # the id in the LEADERBOARD namespace: sorts as the board ranks
    value: Decimal
    customer_id: str


_BOARD_PREFIXES: dict[tuple[str, str, int], str] = {}
_BOARD_PREFIXES_MAX = 4096  # boards in use at once: milestones x targets x cycles kept


def board_prefix(milestone_id: str, target_id: str, cycle: int) -> str:
    # Remembered: an entry key is made for every event on a leaderboard, and formatting the prefix
    # (the cycle's three digits) cost as much as the rest of the key.
    board = (milestone_id, target_id, cycle)
    prefix = _BOARD_PREFIXES.get(board)
    if prefix is None:
        if len(_BOARD_PREFIXES) >= _BOARD_PREFIXES_MAX:
            _BOARD_PREFIXES.clear()
        prefix = _BOARD_PREFIXES[board] = f"{milestone_id}{SEP}{target_id}{SEP}{cycle:03d}{SEP}"
    return prefix


_LAST = 2 * OFFSET - 1  # the largest descending digits a key holds


def _descending(value: Decimal) -> str:
    """``OFFSET - value * SCALE`` rounded down, clamped to the key's digits."""
    scaled = value.scaleb(6)
    whole = int(scaled)  # towards zero
    if whole > scaled:
        whole -= 1  # a negative value with more than six decimals: down, as the floor
    return _inverted(whole)


_SMALL = 10**18  # scaled values up to this (a trillion, with six decimals): most of them
_SMALL_HEAD = f"{(OFFSET - _SMALL) // _SMALL:013d}"  # "0" and twelve nines: OFFSET - _SMALL's leading digits
_SMALL_DIGITS = "%018d"


def _inverted(scaled: int) -> str:
    if 0 < scaled <= _SMALL:
        # OFFSET - scaled is (OFFSET - _SMALL) + (_SMALL - scaled): its leading digits are fixed and
        # the rest is a machine-sized integer's (the 31-digit integer cost half the key's time).
        return _SMALL_HEAD + _SMALL_DIGITS % (_SMALL - scaled)
    inverted = OFFSET - scaled
    return _DIGITS % (inverted if 0 <= inverted <= _LAST else (0 if inverted < 0 else _LAST))


def _descending_text(text: str) -> str:
    """``_descending(Decimal(text))`` read off a value's plain decimal text (``format(value, "f")``,
    as the read index keeps values) with integer arithmetic alone: two entry keys are made per event
    on a leaderboard, and the decimal route cost three times as much. Other text takes that route."""
    negative = text[:1] == "-"
    whole, _, fraction = (text[1:] if negative else text).partition(".")
    if not (whole.isascii() and whole.isdigit() and (not fraction or (fraction.isascii() and fraction.isdigit()))):
        return _descending(Decimal(text))
    scaled = int(whole + fraction[:6].ljust(6, "0"))
    if negative:
        scaled = -scaled - (fraction[6:].strip("0") != "")  # down, as the floor, past six decimals
    return _inverted(scaled)


def entry_key(milestone_id: str, target_id: str, cycle: int, value: Decimal, customer_id: str) -> str:
    return f"{board_prefix(milestone_id, target_id, cycle)}{_descending(value)}{SEP}{customer_id}"


def text_entry_key(milestone_id: str, target_id: str, cycle: int, value: str, customer_id: str) -> str:
    """``entry_key`` of a value's plain decimal text (the read index's)."""
    return f"{board_prefix(milestone_id, target_id, cycle)}{_descending_text(value)}{SEP}{customer_id}"


def parse(key: str) -> Entry:
    _, _, _, inverted, customer_id = key.split(SEP, 4)
    value = Decimal(OFFSET - int(inverted)).scaleb(-6)
    return Entry(key, value.normalize() if value else Decimal(0), customer_id)


def value_text(value: Decimal) -> str:
    return format(value, "f")


def _split(key: str) -> tuple[str, str]:
    """(board prefix, descending value digits) of an entry key."""
    end = key.index(SEP, key.index(SEP, key.index(SEP) + 1) + 1) + 1  # past the third separator
    return key[:end], key[end : end + WIDTH]


def bucket(digits: str, leading: int = LEADING_DIGITS) -> str:
    """The bucket of an entry's descending value digits: their first digits, through ``leading``
    digits past the run of nines after the leading zero (every value at or below zero, whose digits
    begin with a one, shares the bucket "1"). The digits of a positive value are ``10**30 - 1 - u``
    for ``u``, the value in millionths less one: each digit is nine less ``u``'s, so the run of nines
    says how many digits ``u`` has and the next digits are its leading ones. A bucket thus holds
    the values whose ``u`` has the same number of digits and the same ``leading`` leading digits.
    No bucket is a prefix of another, so buckets sort as the board ranks and a bucket's entries are
    exactly the keys that start with it: slices of text, worked out for each entry a checkpoint
    writes while the API keeps counts."""
    if digits[:1] != "0":
        return digits[:1]
    nines = len(digits) - 1 - len(digits[1:].lstrip("9"))
    return digits[: 1 + nines + leading]


def _entry_counter(key: str) -> tuple[str, str] | None:
    """(board prefix, counter id: the board prefix and the bucket) of an entry key; None for a key
    not shaped as one (nothing writes such a key: counting goes on around it rather than fail every
    rank). Customer ids hold no separator, so the value digits end at the last one."""
    end = key.rfind(SEP)
    start = end - WIDTH
    if start < 1 or key.count(SEP, 0, start) != 3 or key[start - 1] != SEP:
        return None
    digits = key[start:end]
    if not (digits.isascii() and digits.isdigit()):
        return None
    return key[:start], key[: start + len(bucket(digits))]


def update(store: StateStore, removed: Iterable[str], added: Iterable[str]) -> None:
    """Remove entries the board holds and add entries it does not (read_index.py: the keys a
    customer loses and gains, in one call)."""
    # Raw keys, with no StateKey made and checked for each: entry keys are made here, of ids that
    # were checked as input, two for most events on a leaderboard.
    for key in removed:
        store._delete(_ENTRY + key.encode("utf-8", "surrogatepass"))
    for key in added:
        store._put(_ENTRY + key.encode("utf-8", "surrogatepass"), EMPTY_DOCUMENT)


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
        placed = self._placed_before(i)
        if k:
            yield from merge(placed, self._new_sorted[k - 1 :: -1], reverse=True)
        else:
            yield from placed

    def _placed_before(self, i: int) -> Iterator[str]:
        """The non-empty placed buckets before buckets[i], the nearest first. A generator function,
        not a generator expression: compiled, an expression assigned to a name is built as a whole
        list, and a rank reads only the first few of thousands of buckets."""
        for j in range(i - 1, -1, -1):
            if self._counts[j]:
                yield self.buckets[j]

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
    """The board's bucket counts on this partition, from a walk of its entries; None if it has none."""
    prefix = board_prefix(milestone_id, target_id, cycle)
    counts = _counted_entries(store, prefix).get(prefix)
    return None if counts is None else BucketCounts(LEADING_DIGITS, counts)


def _counted_entries(store: StateStore, prefix: str = "") -> dict[str, dict[str, int]]:
    """Every board whose prefix starts with ``prefix``: its entries per bucket (by counter id,
    the board prefix and the bucket), in one walk of its keys."""
    tally = _Tally({})
    for key in store.scan(Namespace.LEADERBOARD, prefix):
        tally.add(key)
    return tally.boards


class _Tally:
    """Counts entry keys into ``boards`` as a walk meets them, in order. A bucket's entries come
    together, so a key that starts with the last key's counter id is counted there at once, and
    only a key in another bucket has its bucket worked out."""

    def __init__(self, boards: dict[str, dict[str, int]]) -> None:
        self.boards = boards
        self.forget()

    def forget(self) -> None:
        """Drop what was remembered of the last bucket (the boards may have changed since)."""
        self._counter, self._digits_end = "", 0
        self._counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        counter = self._counter
        if counter and key.startswith(counter) and key[self._digits_end : self._digits_end + 1] == SEP:
            self._counts[counter] += 1
            return
        found = _entry_counter(key)
        if found is None:
            self._counter = ""
            return
        board, counter = found
        self._counter, self._digits_end = counter, len(board) + WIDTH
        self._counts = self.boards.setdefault(board, {})
        self._counts[counter] = self._counts.get(counter, 0) + 1


class CountsMirror:
    """One partition store's bucket counts, in memory and in step with every write to the store.

    Made when the API is given the partition: it walks the store's leaderboard entries once (about
    two seconds per million entries), in slices of ``walk(limit)`` between which the event loop
    runs on, then applies each write's entries gained and lost (``StateStore.listen``, which says
    whether a written key was there before): a rank reads exactly the committed counts, at the cost
    of a look-up and a Fenwick sum. While the walk is under way, a write is applied to the counts
    only for keys the walk has passed; the walk meets the others as they are by then."""

    def __init__(self, store: StateStore, *, walked: bool = True) -> None:
        """``walked``: walk every entry now (else ``walk`` does it, slice by slice)."""
        self.store = store
        self._boards: dict[str, dict[str, int]] = {}  # board prefix: its entries per bucket (by counter id)
        self._summed: dict[str, BucketCounts] = {}  # in step with _boards; built again when missing
        self._stale = False
        self._tally: _Tally | None = _Tally(self._boards)  # the walk under way (None: done)
        self._passed: str | None = None  # the last key the walk counted
        store.listen(self._written, Namespace.LEADERBOARD.prefix)
        if walked:
            self.walk()

    @property
    def walked(self) -> bool:
        return self._tally is None

    def walk(self, limit: int | None = None) -> bool:
        """Count the next ``limit`` entries (all of them: None); True once every entry is counted."""
        tally = self._tally
        if tally is None:
            return True
        tally.forget()  # writes since the last slice may have emptied the bucket it remembers
        start = None if self._passed is None else self._passed + SEP  # the first key after it
        counted = 0
        for key in self.store.scan(Namespace.LEADERBOARD, start=start):
            if limit is not None and counted >= limit:
                return False
            tally.add(key)
            self._passed = key
            counted += 1
        self._tally = None
        return True

    def _read(self) -> None:
        self._boards = {}
        self._summed.clear()
        self._stale = False
        self._tally, self._passed = _Tally(self._boards), None
        self.walk()

    def counts(self, milestone_id: str, target_id: str, cycle: int) -> BucketCounts | None:
        """A board's counts on this partition; None if it has no entries, or while the walk is
        under way (a rank then walks the entries ahead of the customer instead)."""
        if self._stale:
            self._read()
        if self._tally is not None:
            return None
        prefix = board_prefix(milestone_id, target_id, cycle)
        summed = self._summed.get(prefix)
        if summed is None:
            stored = self._boards.get(prefix)
            if stored is None:
                return None
            summed = self._summed[prefix] = BucketCounts(LEADING_DIGITS, dict(stored))
        return summed

    def _written(self, changes: Changes, existed: Existed) -> None:
        try:
            self._apply(changes, existed)
        except Exception:  # never fail the write that called this: count the entries again
            log.exception("leaderboard counts mirror: could not apply a write; counting the entries again")
            self._stale = True

    def _apply(self, changes: Changes, existed: Existed) -> None:
        walking, passed = self._tally is not None, self._passed
        for raw_key, raw_value in changes.items():
            delta = (raw_value is not None) - existed[raw_key]
            if not delta:
                continue  # written again, or deleted where it was not
            key = key_id(raw_key)
            if walking and (passed is None or key > passed):
                continue  # not walked yet: the walk counts it as the store holds it then
            found = _entry_counter(key)
            if found is None:
                continue
            prefix, counter = found
            stored = self._boards.get(prefix)
            if stored is None:
                stored = self._boards[prefix] = {}
            count = stored.get(counter, 0) + delta
            if count:
                stored[counter] = count
            else:
                stored.pop(counter, None)
                if not stored:
                    del self._boards[prefix]
            summed = self._summed.get(prefix)
            if summed is not None and (not stored or not summed.change(counter, count)):
                del self._summed[prefix]  # many buckets new to the mirror, or none left: built when next asked


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
    its bucket (``counts``: counted from the store's entries when True) plus a walk of its bucket, or
    a walk of the whole board ahead of it without counts; and ``neighbours`` keys either side."""
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
