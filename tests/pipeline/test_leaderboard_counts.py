"""A rank from the leaderboard's bucket counts is the rank a walk of the whole board gives, and
the API's in-memory counts follow the store's entries through every kind of write."""

from __future__ import annotations

from decimal import Decimal
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.pipeline import leaderboards
from milestream.pipeline.leaderboards import BucketCounts
from milestream.state.keys import Namespace
from milestream.state.memory import MemoryStore
from milestream.state.overlay import OverlayStore
from milestream.state.rocksdb import RocksDBStore

VALUES = st.one_of(
    st.sampled_from(["0", "-5", "-0.000001", "0.000001", "9.99", "10", "99", "100", "990", "999.999999", "1000"]),
    st.decimals(min_value=-(10**6), max_value=10**7, places=6, allow_nan=False, allow_infinity=False),
    st.sampled_from(["1e29", "1e30", "-1e30"]),  # at and past the key's bounds
).map(Decimal)
CUSTOMERS = st.sampled_from([f"c{n}" for n in range(12)])
OPERATIONS = st.lists(st.tuples(st.booleans(), VALUES, CUSTOMERS), max_size=60)


def brute(keys: set[str], key: str, neighbours: int) -> leaderboards.Around:
    ordered = sorted(keys)
    ahead = [k for k in ordered if k < key]
    after = [k for k in ordered if k > key]
    return leaderboards.Around(
        len(ahead),
        [leaderboards.parse(k) for k in ahead[-neighbours:]] if neighbours else [],
        [leaderboards.parse(k) for k in after[:neighbours]],
    )


def apply(store: MemoryStore, operations: list[tuple[bool, Decimal, str]]) -> set[str]:
    live: set[str] = set()
    for add, value, customer in operations:
        key = leaderboards.entry_key("m", "t", 1, value, customer)
        if add and key not in live:  # as read_index.py does: the keys gained, the keys lost
            leaderboards.put(store, key)
            live.add(key)
        elif not add and key in live:
            leaderboards.delete(store, key)
            live.discard(key)
    return live


@settings(max_examples=200, deadline=None)
@given(OPERATIONS, st.lists(st.tuples(VALUES, CUSTOMERS), min_size=1, max_size=6), st.sampled_from([0, 1, 2, 5]))
def test_counted_ranks_are_the_walked_ranks(operations, probes, neighbours):
    store = MemoryStore()
    live = apply(store, operations)
    for value, customer in probes:
        key = leaderboards.entry_key("m", "t", 1, value, customer)
        expected = brute(live - {key}, key, neighbours)
        assert leaderboards.around(store, "m", "t", 1, key, neighbours) == expected
        assert leaderboards.around(store, "m", "t", 1, key, neighbours, counts=None) == expected  # the walk
    # The counts are the entries: nothing left over when every entry goes.
    mirror = leaderboards.CountsMirror(store)
    for key in live:
        leaderboards.delete(store, key)
    assert leaderboards.bucket_counts(store, "m", "t", 1) is None
    assert mirror.counts("m", "t", 1) is None and mirror._boards == {}


@given(OPERATIONS, VALUES, CUSTOMERS)
def test_count_documents_of_an_older_store_are_left_alone(operations, value, customer):
    """Stores written before the counts were derived kept them as documents (a board marker and a
    count per bucket): they are neither read nor written now, whatever they say."""
    store = MemoryStore()
    prefix = leaderboards.board_prefix("m", "t", 1)
    store.put(Namespace.LEADERBOARD_COUNT.key(prefix), {})
    store.put(Namespace.LEADERBOARD_COUNT.key(prefix + "0" * leaderboards.WIDTH), {"n": 999})
    live = apply(store, [*operations, (True, value, customer)])
    probe = leaderboards.entry_key("m", "t", 1, Decimal(1), "zz")
    assert leaderboards.around(store, "m", "t", 1, probe, 2) == brute(live - {probe}, probe, 2)
    assert leaderboards.CountsMirror(store).counts("m", "t", 1).total() == len(live)
    assert store.get(Namespace.LEADERBOARD_COUNT.key(prefix + "0" * leaderboards.WIDTH)) == {"n": 999}


@pytest.mark.parametrize(
    ("leading", "same", "apart"),
    [
        # A bucket holds the values whose millionths less one share their leading digits: 999.5 and
        # 999.01 share 999; 999 itself (998.999999 less nothing) is in 998's.
        (3, ("999.5", "999.01"), ("999.01", "999")),
        (4, ("999.95", "999.91"), ("999.91", "999.9")),  # 999.9 is in 999.8's
    ],
)
def test_buckets_sort_as_the_board_and_hold_the_leading_digits(leading, same, apart):
    values = [Decimal(v) for v in ("1000", *same, *apart, "100", "99", "1", "0.5", "0", "-3")]
    digits = [leaderboards._split(leaderboards.entry_key("m", "t", 1, v, "c"))[1] for v in values]
    buckets = [leaderboards.bucket(d, leading) for d in digits]
    assert buckets == sorted(buckets)
    assert buckets[1] == buckets[2]
    assert buckets[3] != buckets[4]
    assert buckets[-1] == buckets[-2]  # zero and below: one bucket
    assert all(d >= b for d, b in zip(digits, buckets))  # a bucket's entries sort from its key on


def test_counts_are_the_entries_per_bucket_of_four_leading_digits():
    store = MemoryStore()
    values = [Decimal(v) for v in ("999.95", "999.91", "999.9", "12.345", "12.341", "0", "-3")]
    live = set()
    for n, value in enumerate(values):
        key = leaderboards.entry_key("m", "t", 1, value, f"c{n}")
        leaderboards.put(store, key)
        live.add(key)
    leaderboards.put(store, leaderboards.entry_key("m", "t", 2, Decimal(5), "c0"))  # another board
    counts = leaderboards.bucket_counts(store, "m", "t", 1)
    assert counts.leading == leaderboards.LEADING_DIGITS
    # (999.9, 1000], (999.8, 999.9], (12.34, 12.35], zero and below
    assert list(counts.as_dict().values()) == [2, 1, 2, 2]
    assert list(store.scan(Namespace.LEADERBOARD_COUNT)) == []  # nothing stored but the entries
    mirror = leaderboards.CountsMirror(store)
    assert mirror.counts("m", "t", 1) == counts
    assert mirror.counts("m", "t", 2).total() == 1 and mirror.counts("m", "t", 3) is None
    for value in (Decimal("999.91"), Decimal("12.341"), Decimal("0")):
        probe = leaderboards.entry_key("m", "t", 1, value, "zz")
        assert leaderboards.around(store, "m", "t", 1, probe, 2, mirror.counts("m", "t", 1)) == brute(live, probe, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(CUSTOMERS, st.lists(VALUES, max_size=2)), max_size=40), VALUES, st.sampled_from([0, 2]))
def test_moves_counted_in_one_update_rank_as_the_walk(moves, probe_value, neighbours):
    """A customer's keys change together (read_index.py: the keys lost and gained in one update):
    an entry moving within its bucket leaves the count alone, one moving across buckets moves a count."""
    store = MemoryStore()
    held: dict[str, set[str]] = {}
    for customer, values in moves:
        old = held.get(customer, set())
        new = {leaderboards.entry_key("m", "t", 1, v, customer) for v in values}
        leaderboards.update(store, old - new, new - old)
        held[customer] = new
    live = set().union(*held.values()) if held else set()
    probe = leaderboards.entry_key("m", "t", 1, probe_value, "zz")
    expected = brute(live - {probe}, probe, neighbours)
    assert leaderboards.around(store, "m", "t", 1, probe, neighbours) == expected
    assert leaderboards.around(store, "m", "t", 1, probe, neighbours, counts=None) == expected
    counts = leaderboards.bucket_counts(store, "m", "t", 1)
    assert (counts.total() if counts else 0) == len(live)


@pytest.mark.parametrize("new_buckets_max", [2, BucketCounts.NEW_BUCKETS_MAX])
@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
@settings(max_examples=60, deadline=None)
@given(
    moves=st.lists(st.tuples(CUSTOMERS, st.lists(VALUES, max_size=2)), max_size=30),
    mirrored_after=st.integers(0, 30),
    per_checkpoint=st.integers(1, 6),
)
def test_a_counts_mirror_follows_the_store(
    backend, new_buckets_max, tmp_path_factory, moves, mirrored_after, per_checkpoint
):
    """The API's mirror of a partition's counts, made at any point, equals the counts of the
    store's entries after every later write: single writes (memory) or a checkpoint's write batch
    of several customers' moves (RocksDB), where a key can be gained and lost again before the
    store sees it, or written where it already is (a changelog restored again); with buckets new to
    it waiting beside its tree, and with its tree built again when too many wait."""
    with patch.object(BucketCounts, "NEW_BUCKETS_MAX", new_buckets_max):
        _mirror_follows(backend, tmp_path_factory, moves, mirrored_after, per_checkpoint)


def _mirror_follows(backend, tmp_path_factory, moves, mirrored_after, per_checkpoint):
    base = MemoryStore() if backend == "memory" else RocksDBStore(tmp_path_factory.mktemp("counts") / "db")
    held: dict[str, set[str]] = {}
    mirror = None
    overlay: OverlayStore | None = None
    for n, (customer, values) in enumerate(moves):
        if n == mirrored_after:
            mirror = leaderboards.CountsMirror(base)
            assert mirror.counts("m", "t", 1) == leaderboards.bucket_counts(base, "m", "t", 1)
        old = held.get(customer, set())
        new = {leaderboards.entry_key("m", "t", 1, v, customer) for v in values}
        if isinstance(base, RocksDBStore):
            overlay = overlay or OverlayStore(base)
            leaderboards.update(overlay, old - new, new - old)
            if (n + 1) % per_checkpoint and n + 1 < len(moves):
                held[customer] = new
                continue  # the checkpoint writes several moves at once
            changes, _ = overlay.take_changes()
            base.write(changes)
            base.write({k: v for k, v in changes.items() if v is not None})  # the same entries again
            overlay = None
        else:
            leaderboards.update(base, old - new, new - old)
        held[customer] = new
        if mirror is not None:
            mirrored, stored = mirror.counts("m", "t", 1), leaderboards.bucket_counts(base, "m", "t", 1)
            assert mirrored == stored
            if stored is not None:  # the mirror's sums, kept by changes, are the sums of counts read afresh
                assert mirrored.total() == stored.total() == len(set().union(*held.values()))
                for start in [*stored.buckets, leaderboards.board_prefix("m", "t", 2)]:
                    ahead, earlier = mirrored.ahead_of(start)
                    assert (ahead, list(earlier)) == (stored.ahead_of(start)[0], list(stored.ahead_of(start)[1]))
    base.close()


MOVES = st.lists(st.tuples(CUSTOMERS, st.lists(VALUES, max_size=2)), max_size=30)


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
@settings(max_examples=80, deadline=None)
@given(before=MOVES, during=MOVES, slice_keys=st.integers(1, 5), per_slice=st.integers(0, 3), boards=st.integers(1, 3))
def test_a_mirror_walked_in_slices_counts_the_writes_between_them(
    backend, tmp_path_factory, before, during, slice_keys, per_slice, boards
):
    """The API walks a partition's entries a slice at a time (api/handlers.py), and the store's
    writes go on between slices: once walked, the mirror's counts are the store's, on every board,
    whether a write fell behind the walk, ahead of it, or on the key it had just counted."""
    base = MemoryStore() if backend == "memory" else RocksDBStore(tmp_path_factory.mktemp("walk") / "db")
    held: dict[tuple[str, int], set[str]] = {}

    def move(n: int, customer: str, values: list[Decimal]) -> None:
        cycle = n % boards + 1  # the moves spread over several boards: slices end inside and between them
        old = held.get((customer, cycle), set())
        new = {leaderboards.entry_key("m", "t", cycle, v, customer) for v in values}
        if isinstance(base, RocksDBStore):  # a checkpoint's write batch
            overlay = OverlayStore(base)
            leaderboards.update(overlay, old - new, new - old)
            base.write(overlay.take_changes()[0])
        else:
            leaderboards.update(base, old - new, new - old)
        held[customer, cycle] = new

    for n, (customer, values) in enumerate(before):
        move(n, customer, values)
    mirror = leaderboards.CountsMirror(base, walked=False)
    pending = list(enumerate(during))
    while not mirror.walk(slice_keys):
        assert mirror.counts("m", "t", 1) is None  # not counted yet: a rank walks the entries instead
        for n, (customer, values) in pending[:per_slice]:
            move(n, customer, values)
        del pending[:per_slice]
    for n, (customer, values) in pending:
        move(n, customer, values)
    assert mirror.walked
    for cycle in range(1, boards + 1):
        assert mirror.counts("m", "t", cycle) == leaderboards.bucket_counts(base, "m", "t", cycle)
    base.close()


def test_a_mirror_that_cannot_apply_a_write_counts_the_entries_again():
    store = MemoryStore()
    leaderboards.put(store, leaderboards.entry_key("m", "t", 1, Decimal(5), "a"))
    mirror = leaderboards.CountsMirror(store)
    assert mirror.counts("m", "t", 1).total() == 1
    with patch.object(leaderboards.CountsMirror, "_apply", side_effect=RuntimeError("a bug")):
        leaderboards.put(store, leaderboards.entry_key("m", "t", 1, Decimal(7), "b"))  # the write still succeeds
    store.put(Namespace.LEADERBOARD.key("not an entry key"), {})  # skipped, by the mirror and a recount alike
    assert mirror.counts("m", "t", 1).total() == 2
    assert leaderboards.bucket_counts(store, "m", "t", 1).total() == 2


@given(VALUES)
def test_a_bucket_is_every_key_that_starts_with_it(value):
    digits = leaderboards._split(leaderboards.entry_key("m", "t", 1, value, "c"))[1]
    found = leaderboards.bucket(digits)
    width = leaderboards.WIDTH
    first, last = found.ljust(width, "0"), found.ljust(width, "9")
    assert digits.startswith(found)
    assert leaderboards.bucket(first) == leaderboards.bucket(last) == found
    if int(last) < 2 * leaderboards.OFFSET - 1:
        assert leaderboards.bucket(f"{int(last) + 1:0{width}d}") != found  # the next digits: the next bucket
    if int(first) > 0:
        assert leaderboards.bucket(f"{int(first) - 1:0{width}d}") != found


@given(st.lists(st.tuples(st.sampled_from([1, 2]), VALUES, CUSTOMERS), max_size=80))
def test_a_walk_counts_each_entry_in_its_bucket(entries):
    store = MemoryStore()
    expected: dict[str, dict[str, int]] = {}
    for cycle, value, customer in entries:
        key = leaderboards.entry_key("m", "t", cycle, value, customer)
        if store.has(Namespace.LEADERBOARD.key(key)):
            continue
        leaderboards.put(store, key)
        board, digits = leaderboards._split(key)
        counter = board + leaderboards.bucket(digits)
        expected.setdefault(board, {}).setdefault(counter, 0)
        expected[board][counter] += 1
    assert leaderboards._counted_entries(store) == expected


def _reference_bucket(digits: str, leading: int) -> tuple[int, str] | None:
    """The bucket by its definition: a positive value's millionths less one, ``u``, by its number
    of digits and its ``leading`` leading digits; None for zero and below."""
    inverted = int(digits)
    if inverted >= leaderboards.OFFSET:
        return None
    u = str(leaderboards.OFFSET - 1 - inverted)
    return len(u), u[:leading]


DIGITS = st.one_of(
    VALUES.map(leaderboards._descending),
    st.integers(0, 2 * leaderboards.OFFSET - 1).map(lambda n: f"{n:031d}"),
    st.integers(0, 40).map(lambda n: f"{max(leaderboards.OFFSET - 10**n, 0):031d}"),  # at powers of ten
    st.integers(0, 40).map(lambda n: f"{max(leaderboards.OFFSET - 10**n - 1, 0):031d}"),
)


@given(DIGITS, DIGITS, st.integers(1, 6))
def test_buckets_are_the_values_sharing_their_leading_digits_and_sort_as_the_board(one, other, leading):
    together = leaderboards.bucket(one, leading) == leaderboards.bucket(other, leading)
    assert together == (_reference_bucket(one, leading) == _reference_bucket(other, leading))
    if not together:
        assert (leaderboards.bucket(one, leading) < leaderboards.bucket(other, leading)) == (one < other)


def test_board_prefixes_are_remembered_within_a_bound():
    """Prefixes are remembered per board (made for every event on a leaderboard), and the memory of
    them stays bounded however many boards pass through a worker."""
    first = leaderboards.board_prefix("m", "t", 7)
    assert first == "m\x00t\x00007\x00"
    assert leaderboards.board_prefix("m", "t", 7) is first
    for n in range(leaderboards._BOARD_PREFIXES_MAX + 10):
        assert leaderboards.board_prefix(f"m{n}", "t", n % 999) == f"m{n}\x00t\x00{n % 999:03d}\x00"
    assert len(leaderboards._BOARD_PREFIXES) <= leaderboards._BOARD_PREFIXES_MAX


@given(st.text(alphabet="ab\x00", max_size=12))
def test_a_key_not_shaped_as_an_entry_is_refused_by_split(key):
    """Fewer than three separators: ValueError; nor is it counted (``_entry_counter``)."""
    assert leaderboards._entry_counter(key) is None  # no value digits either
    if key.count("\x00") < 3:
        with pytest.raises(ValueError):
            leaderboards._split(key)
    else:
        board, digits = leaderboards._split(key)
        assert board.count("\x00") == 3 and board.endswith("\x00") and key.startswith(board + digits)
