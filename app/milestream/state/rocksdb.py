"""RocksDB backend (rocksdict), for simulations over more customers than fit in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from rocksdict import Options, Rdict

from .base import StateStore, decode_state, encode_state


class RocksDBStore(StateStore):
    def __init__(self, path: str | Path) -> None:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options)

    def get(self, key: str) -> dict[str, Any] | None:
        return decode_state(self._db.get(key.encode()))

    def put(self, key: str, state: dict[str, Any]) -> None:
        self._db[key.encode()] = encode_state(state)

    def delete(self, key: str) -> None:
        self._db.delete(key.encode())

    def keys(self) -> Iterator[str]:
        for raw in self._db.keys():
            yield raw.decode()

    def close(self) -> None:
        self._db.close()
