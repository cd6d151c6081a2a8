"""Conformance cases every state backend runs."""

import pytest

from milestream.state.memory import MemoryStore
from milestream.state.rocksdb import RocksDBStore


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path):
    backend = MemoryStore() if request.param == "memory" else RocksDBStore(tmp_path / "state")
    yield backend
    backend.close()


def test_missing_key_is_none(store):
    assert store.get("nobody") is None


def test_round_trip_keeps_nested_documents(store):
    state = {"v": 1, "o": {"t/0": 41}, "m": {"m1": {"c": {"1": {"t": {"spend": {"v": "12.50"}}, "f": []}}}}}
    store.put("c1", state)
    assert store.get("c1") == state


def test_put_replaces(store):
    store.put("c1", {"a": 1})
    store.put("c1", {"b": 2})
    assert store.get("c1") == {"b": 2}


def test_keys_lists_every_customer(store):
    for key in ("b", "a", "c"):
        store.put(key, {})
    assert sorted(store.keys()) == ["a", "b", "c"]


def test_unicode_keys(store):
    store.put("kunde-ä-客户", {"x": "y"})
    assert store.get("kunde-ä-客户") == {"x": "y"}
