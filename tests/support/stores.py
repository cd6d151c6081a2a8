"""Stores that let a test see what the pipeline writes."""

from __future__ import annotations

import time
from typing import Any

from milestream.state.keys import StateKey
from milestream.state.memory import MemoryStore
from milestream.state.rocksdb import RocksDBStore


class RecordingStore(MemoryStore):
    """A memory store that lists every ``put`` in ``puts`` (key, document), in order.

    A subclass rather than a patched instance: in the compiled build a store's methods are not
    looked up on the instance, so only an override is seen by the pipeline."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[StateKey, Any]] = []

    def put(self, key: StateKey, state: dict[str, Any]) -> None:
        self.puts.append((key, state))
        super().put(key, state)


def in_memory_only(store: RocksDBStore) -> int:
    """Entries in a RocksDB store's memtables (the active one and those waiting for their flush)."""
    db = store._db
    return (db.property_int_value("rocksdb.num-entries-active-mem-table") or 0) + (
        db.property_int_value("rocksdb.num-entries-imm-mem-tables") or 0
    )


def flushed(store: RocksDBStore) -> bool:
    """Whether the store's memtables are empty within 10 s (a flush runs in RocksDB's background thread)."""
    for _ in range(200):
        if in_memory_only(store) == 0:
            return True
        time.sleep(0.05)
    return False
