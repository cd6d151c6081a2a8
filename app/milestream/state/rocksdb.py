"""RocksDB backend (rocksdict), for simulations over more customers than fit in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rocksdict import Options, Rdict

from .base import StateStore


class RocksDBStore(StateStore):
    def __init__(self, path: str | Path) -> None:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options)

    def _get(self, raw_key: bytes) -> bytes | None:
        return self._db.get(raw_key)

    def _put(self, raw_key: bytes, raw_value: bytes) -> None:
        self._db[raw_key] = raw_value

    def _delete(self, raw_key: bytes) -> None:
        self._db.delete(raw_key)

    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        # Keys are sorted: seek to the namespace and stop at its end.
        for raw_key in self._db.keys(from_key=prefix):
            if not isinstance(raw_key, bytes) or not raw_key.startswith(prefix):
                return
            yield raw_key

    def _scan_sorted(self, prefix: bytes, start: bytes) -> Iterator[bytes]:
        for raw_key in self._db.keys(from_key=start):
            if not isinstance(raw_key, bytes) or not raw_key.startswith(prefix):
                return
            yield raw_key

    def close(self) -> None:
        self._db.close()
