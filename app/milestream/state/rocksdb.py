"""RocksDB backend (rocksdict): the worker's per-partition stores and large simulations."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch, WriteOptions

from .base import StateStore

# Outside every namespace (state/keys.py tags are letters followed by ":"), so no state key names it.
_META_PREFIX = b"\x00meta:"


class RocksDBStore(StateStore):
    """``changelog_flush_interval_s``: given for a store that is a copy of a changelog and records, in
    the same write batch as the state, the changelog offset it reflects (runtime/partitions.py). Such
    a store skips RocksDB's write-ahead log, as Kafka Streams' stores do: a crash then loses the writes
    not yet flushed to a table file, all together with the offset written with them (RocksDB flushes
    whole memtables, in order), so the store reopens as it stood at an earlier offset and its restore
    reads the changelog from there. A closed store has flushed everything. The log cost about a
    microsecond a record on the worker's path and wrote every byte to disk twice.

    Such a store also flushes its memtable once a write has waited that many seconds in it, at its
    next write or when the worker's loop calls :meth:`flush_if_due` (it does while idle too): a quiet
    store would otherwise keep days of writes in memory only, and reopen after a crash further back
    than the changelog keeps tombstones (compaction drops them after the topic's
    ``delete.retention.ms``, a day by default), bringing deleted keys back."""

    def __init__(self, path: str | Path, *, changelog_flush_interval_s: float | None = None) -> None:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # A Bloom filter per table file (10 bits a key, about 15 MB for a million customers' keys): a
        # key that is not there is answered without reading a block. Many are looked up: a new
        # customer's state, and a leaderboard entry a checkpoint adds (the API's counts ask whether it
        # was there before).
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        # And one over each memtable's keys (2 % of its size, about 1.3 MB): most of those look-ups
        # miss keys written since the last flush, which the memtable otherwise searches for.
        options.set_memtable_whole_key_filtering(True)
        options.set_memtable_prefix_bloom_ratio(0.02)
        self.path = Path(path)
        self._db = Rdict(str(path), options)
        self._flush_interval_s = changelog_flush_interval_s  # None: with the write-ahead log, RocksDB decides
        if changelog_flush_interval_s is not None:
            write_options = WriteOptions()
            # An attribute (rocksdict 0.3's stubs declare a method, which the object does not have).
            write_options.disable_wal = True  # type: ignore[method-assign, assignment]
            self._db.set_write_options(write_options)
        self._unflushed_since: float | None = None  # the first write since the last flush asked for

    def _written(self) -> None:
        if self._flush_interval_s is None:
            return
        if self._unflushed_since is None:
            self._unflushed_since = time.monotonic()
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush the memtable if a write has waited ``changelog_flush_interval_s`` in it."""
        since, interval = self._unflushed_since, self._flush_interval_s
        if since is not None and interval is not None and time.monotonic() - since >= interval:
            self._db.flush(wait=False)  # in RocksDB's background thread
            self._unflushed_since = None

    def _get(self, raw_key: bytes) -> bytes | None:
        return self._db.get(raw_key)

    def _get_many(self, raw_keys: list[bytes]) -> list[bytes | None]:
        values: Any = self._db.get(list[Any](raw_keys))  # one multi-get (a checkpoint's keys, a restore's)
        return list(values)

    def _put(self, raw_key: bytes, raw_value: bytes) -> None:
        heard = self._before_write({raw_key: raw_value}) if self._listeners else None
        self._db[raw_key] = raw_value
        self._written()
        if heard:
            self._notify(heard)

    def _delete(self, raw_key: bytes) -> None:
        heard = self._before_write({raw_key: None}) if self._listeners else None
        self._db.delete(raw_key)
        self._written()
        if heard:
            self._notify(heard)

    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        return self._scan_sorted(prefix, prefix)

    def _scan_sorted(self, prefix: bytes, start: bytes) -> Iterator[bytes]:
        # Keys are sorted: seek to the start and stop at the prefix's end.
        for raw_key in self._db.keys(from_key=start):
            if not isinstance(raw_key, bytes) or not raw_key.startswith(prefix):
                return
            yield raw_key

    def _scan_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for raw_key, raw_value in self._db.items(from_key=prefix):
            if not isinstance(raw_key, bytes) or not raw_key.startswith(prefix):
                return
            yield raw_key, raw_value

    def write(self, changes: Mapping[bytes, bytes | None], meta: Mapping[str, bytes] | None = None) -> None:
        """Apply ``changes`` (None: delete) and ``meta`` atomically, in one RocksDB write batch."""
        # In key order: each insert into RocksDB's memtable (a skip list) then starts near the last
        # one's place, already in the CPU's cache (about 10 % less time for a checkpoint's batch).
        ordered = sorted(changes)
        heard = self._before_write(changes, ordered) if self._listeners else None
        batch = WriteBatch(raw_mode=True)
        for raw_key in ordered:
            raw_value = changes[raw_key]
            if raw_value is None:
                batch.delete(raw_key)
            else:
                batch.put(raw_key, raw_value)
        for name, value in (meta or {}).items():
            batch.put(_META_PREFIX + name.encode(), value)
        self._db.write(batch)
        self._written()
        if heard:
            self._notify(heard)

    def empty(self) -> bool:
        """Whether the store holds nothing (no key, no meta entry)."""
        return next(iter(self._db.keys()), None) is None

    def meta(self, name: str) -> bytes | None:
        """A value :meth:`write` stored beside the state (e.g. the changelog offset it reflects)."""
        return self._db.get(_META_PREFIX + name.encode())

    def estimates(self) -> tuple[int, int]:
        """RocksDB's estimates of the number of keys and of the live bytes (for metrics)."""
        keys = self._db.property_int_value("rocksdb.estimate-num-keys") or 0
        size = self._db.property_int_value("rocksdb.estimate-live-data-size") or 0
        return keys, size

    def close(self) -> None:
        self._db.close()
