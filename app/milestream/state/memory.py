"""In-memory backend: tests, the topology driver, small simulations."""

from __future__ import annotations

from collections.abc import Iterator

from mypy_extensions import mypyc_attr

from .base import StateStore


@mypyc_attr(allow_interpreted_subclasses=True)  # tests' fault-injecting stores subclass it
class MemoryStore(StateStore):
    def __init__(self) -> None:
        # Encoded keys and values, like the real backends, so tests catch state that does not survive a round trip.
        self._data: dict[bytes, bytes] = {}

    def _get(self, raw_key: bytes) -> bytes | None:
        return self._data.get(raw_key)

    def _put(self, raw_key: bytes, raw_value: bytes) -> None:
        heard = self._before_write({raw_key: raw_value}) if self._listeners else None
        self._data[raw_key] = raw_value
        if heard:
            self._notify(heard)

    def _delete(self, raw_key: bytes) -> None:
        heard = self._before_write({raw_key: None}) if self._listeners else None
        self._data.pop(raw_key, None)
        if heard:
            self._notify(heard)

    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        return iter(sorted(k for k in self._data if k.startswith(prefix)))
