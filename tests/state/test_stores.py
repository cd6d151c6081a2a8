"""Conformance cases every state backend runs, and the key namespaces they share."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.state.keys import Namespace, StateKey
from milestream.state.memory import MemoryStore
from milestream.state.overlay import OverlayStore
from milestream.state.rocksdb import RocksDBStore
from tests.support.stores import flushed, in_memory_only


def open_store(backend: str, folder: Path):
    if backend == "memory":
        return MemoryStore()
    if backend == "rocksdb":
        return RocksDBStore(folder / "state")
    # A batch's view of a partition's store (the worker's), over RocksDB holding older writes.
    base = RocksDBStore(folder / "base")
    base.put(Namespace.CUSTOMER.key("older"), {"kept": True})
    base.delete(Namespace.CUSTOMER.key("older"))
    return OverlayStore(base)


BACKENDS = ["memory", "rocksdb", "overlay"]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    backend = open_store(request.param, tmp_path)
    yield backend
    backend.close()


def customer(customer_id: str) -> StateKey:
    return Namespace.CUSTOMER.key(customer_id)


def test_missing_key_is_none(store):
    assert store.get(customer("nobody")) is None


def test_round_trip_keeps_nested_documents(store):
    state = {"v": 1, "o": {"t/0": 41}, "m": {"m1": {"c": {"1": {"t": {"spend": {"v": "12.50"}}, "f": []}}}}}
    store.put(customer("c1"), state)
    assert store.get(customer("c1")) == state


def test_put_replaces(store):
    store.put(customer("c1"), {"a": 1})
    store.put(customer("c1"), {"b": 2})
    assert store.get(customer("c1")) == {"b": 2}


def test_delete(store):
    store.put(customer("c1"), {"a": 1})
    store.delete(customer("c1"))
    store.delete(customer("never-there"))
    assert store.get(customer("c1")) is None and list(store.keys(Namespace.CUSTOMER)) == []


def test_keys_lists_every_customer_and_nothing_else(store):
    for key in ("b", "a", "c"):
        store.put(customer(key), {})
        store.put(Namespace.OUTBOX.key(key), {"ob": []})
    store.put(Namespace.CLOSE_DIRECTORY.key("0"), {"s": [], "t": []})
    assert sorted(store.keys(Namespace.CUSTOMER)) == ["a", "b", "c"]
    assert sorted(store.keys(Namespace.OUTBOX)) == ["a", "b", "c"]
    assert list(store.keys(Namespace.CLOSE_DIRECTORY)) == ["0"]
    assert list(store.keys(Namespace.CLOSE_TICK)) == []


def test_unicode_keys(store):
    store.put(customer("kunde-ä-客户"), {"x": "y"})
    assert store.get(customer("kunde-ä-客户")) == {"x": "y"}
    assert list(store.keys(Namespace.CUSTOMER)) == ["kunde-ä-客户"]


def test_only_state_keys_are_accepted(store):
    """No caller can reach the store with a string it built, such as ``customer + "\\x00outbox"``."""
    for call in (
        lambda: store.get("c1"),
        lambda: store.put("c1", {}),
        lambda: store.delete("c1"),
        lambda: store.put(b"c:c1", {}),
        lambda: list(store.keys("c")),
    ):
        with pytest.raises(TypeError):
            call()
    with pytest.raises(TypeError):
        StateKey(Namespace.CUSTOMER, b"c1")


# Ids an attacker might try: the old internal suffixes and prefixes, every tag, NUL, separators,
# ids that are prefixes of one another, a lone surrogate.
TAGS = [namespace.value for namespace in Namespace]
HOSTILE_IDS = list(
    dict.fromkeys(
        [
            "",
            "victim",
            "victim\x00outbox",
            "victim\x00",
            "\x00",
            "\x00close:0",
            "\x00close:0:2024-02-01T00:00:00Z|m1:0",
            "\x00tick:0:0",
            ":",
            "::",
            "victim:",
            ":victim",
            "\udc80",
            "v" * 5000,
            *(f"{tag}:" for tag in TAGS),
            *(f"{tag}:victim" for tag in TAGS),
            *(f"{tag}\x00victim" for tag in TAGS),
            *TAGS,
            "0",
            "0:2024-02-01T00:00:00Z|m1",
            "0:2024-02-01T00:00:00Z|m1:0",
            "0:0",
        ]
    )
)


def test_namespaces_are_disjoint_for_hostile_ids(store):
    documents = {ns.key(i): {"ns": ns.name, "n": n} for ns in Namespace for n, i in enumerate(HOSTILE_IDS)}
    for key, document in documents.items():
        store.put(key, document)
    assert {key: store.get(key) for key in documents} == documents
    for namespace in Namespace:
        assert sorted(store.keys(namespace)) == sorted(HOSTILE_IDS)
    # Removing a namespace's keys leaves every other namespace whole.
    for i in HOSTILE_IDS:
        store.delete(Namespace.CUSTOMER.key(i))
    assert list(store.keys(Namespace.CUSTOMER)) == []
    assert {k: store.get(k) for k in documents if k.namespace != Namespace.CUSTOMER} == {
        k: d for k, d in documents.items() if k.namespace != Namespace.CUSTOMER
    }


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Namespace)), st.text(max_size=12)), max_size=25))
def test_any_ids_stay_in_their_namespace(backend, keys):
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(backend, Path(folder))
        try:
            for n, (namespace, key_id) in enumerate(keys):
                store.put(namespace.key(key_id), {"n": n})
            last = {namespace.key(key_id): n for n, (namespace, key_id) in enumerate(keys)}
            assert {key: store.get(key) for key in last} == {key: {"n": n} for key, n in last.items()}
            for namespace in Namespace:
                assert sorted(store.keys(namespace)) == sorted(k.id for k in last if k.namespace == namespace)
        finally:
            store.close()


def test_a_key_encodes_as_its_tag_then_its_id_and_decodes_back():
    assert Namespace.CUSTOMER.key("victim\x00outbox").encode() == b"c:victim\x00outbox"
    assert Namespace.OUTBOX.key("victim").encode() == b"o:victim"
    for ns in Namespace:
        for i in HOSTILE_IDS:
            assert StateKey.decode(ns.key(i).encode()) == ns.key(i)


@pytest.mark.parametrize("raw", [b"victim", b"victim\x00outbox", b"\x00close:0", b"", b"c", b"x:1"])
def test_a_key_from_before_namespaces_is_not_mistaken_for_one(raw):
    with pytest.raises(ValueError):
        StateKey.decode(raw)


def test_overlay_reads_through_and_keeps_writes_until_taken(tmp_path):
    base = RocksDBStore(tmp_path / "base")
    base.put(customer("a"), {"n": 1})
    base.put(customer("b"), {"n": 1})
    overlay = OverlayStore(base)
    assert overlay.get(customer("a")) == {"n": 1}
    overlay.put(customer("a"), {"n": 2})
    overlay.delete(customer("b"))
    overlay.put(customer("c"), {"n": 1})
    entry = Namespace.LEADERBOARD.key("m\x00t\x00001\x00digits\x00a")
    overlay.put_empty(entry)
    assert list(overlay.keys(Namespace.CUSTOMER)) == ["a", "c"]
    assert base.get(customer("a")) == {"n": 1}  # nothing reaches the store before the checkpoint
    changes, local = overlay.take_changes()
    assert changes == {
        customer("a").encode(): b'{"n":2}',
        customer("b").encode(): None,
        customer("c").encode(): b'{"n":1}',
        entry.encode(): b"{}",
    }
    assert local == {entry.encode()}  # kept in the store, not sent to the changelog
    assert overlay.take_changes() == ({}, set())


def test_overlay_rollback_undoes_only_the_current_records_writes(tmp_path):
    overlay = OverlayStore(RocksDBStore(tmp_path / "base"))
    overlay.begin()
    overlay.put(customer("a"), {"n": 1})
    overlay.begin()  # the next record
    overlay.put(customer("a"), {"n": 2})
    overlay.put(customer("b"), {"n": 1})
    overlay.delete(customer("a"))
    overlay.put_empty(Namespace.LEADERBOARD.key("m\x00t\x00001\x00digits\x00b"))  # a local key
    overlay.rollback()
    assert overlay.get(customer("a")) == {"n": 1} and overlay.get(customer("b")) is None
    assert list(overlay.changes) == [customer("a").encode()]
    assert overlay.local == set()


def test_scan_documents_reads_each_id_with_its_document_in_key_order(store):
    for key, n in (("b\x00", 2), ("a", 1), ("b", 3), ("c", 4)):
        store.put(Namespace.LEADERBOARD_COUNT.key(key), {"n": n})
    store.put(Namespace.LEADERBOARD.key("b-entry"), {})
    store.put(Namespace.LEADERBOARD_COUNT.key("gone"), {"n": 9})
    store.delete(Namespace.LEADERBOARD_COUNT.key("gone"))
    assert list(store.scan_documents(Namespace.LEADERBOARD_COUNT, "b")) == [("b", {"n": 3}), ("b\x00", {"n": 2})]
    assert [id for id, _ in store.scan_documents(Namespace.LEADERBOARD_COUNT)] == ["a", "b", "b\x00", "c"]
    assert list(store.scan_documents(Namespace.LEADERBOARD_COUNT, "z")) == []
    with pytest.raises(TypeError):
        list(store.scan_documents("n"))


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_listeners_see_every_write_once_it_is_stored(backend, tmp_path):
    store = open_store(backend, tmp_path)
    seen: list[dict] = []
    store.listen(
        lambda changes, existed: seen.append({k: (store._get(k) == v, existed[k]) for k, v in changes.items()})
    )
    store.put(customer("a"), {"n": 1})
    store.put(customer("a"), {"n": 2})
    store.delete(customer("a"))
    a = customer("a").raw
    # Each stored when heard, with whether the key held a value before the write.
    assert seen == [{a: (True, False)}, {a: (True, True)}, {a: (True, True)}]
    assert store.get(customer("a")) is None
    if isinstance(store, RocksDBStore):  # the checkpoint's write: one call for the whole batch
        seen.clear()
        store.put(customer("c"), {})
        seen.clear()
        store.write({customer("b").raw: b"{}", customer("c").raw: None, customer("d").raw: None})
        assert seen == [
            {customer("b").raw: (True, False), customer("c").raw: (True, True), customer("d").raw: (True, False)}
        ]
    store.close()


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_a_listener_hears_only_its_prefix(backend, tmp_path):
    store = open_store(backend, tmp_path)
    seen: list[dict] = []
    store.listen(lambda changes, existed: seen.append(dict(changes)), Namespace.LEADERBOARD.prefix)
    store.put(customer("a"), {"n": 1})
    store.put(Namespace.LEADERBOARD.key("x"), {})
    if isinstance(store, RocksDBStore):
        store.write({customer("b").raw: b"{}", Namespace.LEADERBOARD.key("y").raw: None})
    assert seen[0] == {Namespace.LEADERBOARD.key("x").raw: b"{}"}
    assert seen[1:] == ([{Namespace.LEADERBOARD.key("y").raw: None}] if isinstance(store, RocksDBStore) else [])
    store.close()


KEY_BYTES = st.binary(max_size=4).map(lambda b: b.replace(b"\x00", b"\xff"))  # 0xff runs: the edge of a prefix


@settings(max_examples=60, deadline=None)
@given(st.lists(KEY_BYTES, min_size=1, max_size=30, unique=True), st.lists(KEY_BYTES, max_size=4))
def test_a_batch_writes_each_listener_exactly_its_prefixs_part(keys, prefixes):
    """A batch's keys are sorted, and each listener's part of them found by bisection: the same keys
    as a look at every key would find, whatever the prefix (empty, ending in 0xff bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        store = RocksDBStore(Path(folder) / "s")
        heard: dict[int, list[dict]] = {}
        for n, prefix in enumerate(prefixes):
            store.listen(lambda changes, existed, n=n: heard.setdefault(n, []).append(dict(changes)), prefix)
        changes = {b"k" + key if n % 3 else key: (None if n % 2 else b"{}") for n, key in enumerate(keys)}
        store.write(changes)
        for n, prefix in enumerate(prefixes):
            theirs = {k: v for k, v in changes.items() if k.startswith(prefix)}
            assert heard.get(n, []) == ([theirs] if theirs else [])
        store.close()


def test_an_overlay_cannot_be_listened_to(tmp_path):
    """Its writes reach the store under it only at the checkpoint: a listener would hear nothing."""
    overlay = OverlayStore(MemoryStore())
    with pytest.raises(TypeError):
        overlay.listen(lambda changes, existed: None)


CRASH_AFTER_WRITE = """
import os, sys
from milestream.state.rocksdb import RocksDBStore
store = RocksDBStore(sys.argv[1], changelog_flush_interval_s=60.0 if sys.argv[2] == "1" else None)
store.write({b"c:flushed": b"{}"}, {"changelog-offset": b"1"})
store._db.flush()
store.write({b"c:a": b"{}", b"c:b": b"{}"}, {"changelog-offset": b"3"})
os._exit(0)  # as a kill -9: nothing closed
"""


@pytest.mark.parametrize("changelog_backed", [False, True])
def test_a_crash_loses_a_changelog_backed_stores_unflushed_writes_with_their_offset(changelog_backed, tmp_path):
    """Without the write-ahead log, a crash takes the writes since the last flush, the changelog
    offset written with them included, so the store stands at an earlier offset whose state it
    holds whole; a store without a changelog keeps every write."""
    path = tmp_path / "state"
    subprocess.run([sys.executable, "-c", CRASH_AFTER_WRITE, str(path), "1" if changelog_backed else "0"], check=True)
    store = RocksDBStore(path, changelog_flush_interval_s=60.0 if changelog_backed else None)
    kept = {key: store._get(key) is not None for key in (b"c:flushed", b"c:a", b"c:b")}
    if changelog_backed:
        assert kept == {b"c:flushed": True, b"c:a": False, b"c:b": False}
        assert store.meta("changelog-offset") == b"1"
    else:
        assert all(kept.values())
        assert store.meta("changelog-offset") == b"3"
    # Closed, it has flushed everything.
    store.write({b"c:c": b"{}"}, {"changelog-offset": b"4"})
    store.close()
    reopened = RocksDBStore(path, changelog_flush_interval_s=60.0 if changelog_backed else None)
    assert reopened._get(b"c:c") == b"{}" and reopened.meta("changelog-offset") == b"4"
    reopened.close()


def test_a_changelog_backed_store_flushes_once_a_write_has_waited_its_flush_interval(tmp_path):
    """What a crash can take from it is bounded in time, not only by the memtable's size: at the next
    write, or when the worker's loop asks (a store written once, then idle)."""
    store = RocksDBStore(tmp_path / "state", changelog_flush_interval_s=0.5)
    store.write({b"c:a": b"{}"}, {"changelog-offset": b"1"})
    store.flush_if_due()
    assert in_memory_only(store) == 2  # the key and the offset: within the interval, not flushed
    time.sleep(0.6)
    store.flush_if_due()  # no write since: the loop's call flushes it
    assert flushed(store)
    store.flush_if_due()
    store.write({b"c:b": b"{}"}, {"changelog-offset": b"2"})  # a new interval from this write
    assert in_memory_only(store) == 2
    time.sleep(0.6)
    store.write({b"c:c": b"{}"}, {"changelog-offset": b"3"})  # the write that finds the interval over
    assert flushed(store)
    store.close()
    with_log = RocksDBStore(tmp_path / "logged")  # with its log, RocksDB decides
    with_log.write({b"c:a": b"{}"})
    with_log.flush_if_due()
    assert in_memory_only(with_log) == 1
    with_log.close()
