"""Stores that let a test see what the pipeline writes."""

from __future__ import annotations

from typing import Any

from milestream.state.keys import StateKey
from milestream.state.memory import MemoryStore


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
