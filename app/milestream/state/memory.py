"""In-memory backend: tests, the topology driver, small simulations."""

from __future__ import annotations

from typing import Any, Iterator

from .base import StateStore, decode_state, encode_state


class MemoryStore(StateStore):
    def __init__(self) -> None:
        # Stored encoded, like the real backends, so tests catch state that does not survive a round trip.
        self._data: dict[str, bytes] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return decode_state(self._data.get(key))

    def put(self, key: str, state: dict[str, Any]) -> None:
        self._data[key] = encode_state(state)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def keys(self) -> Iterator[str]:
        return iter(sorted(self._data))
