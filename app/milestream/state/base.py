"""The state-store interface the pipeline needs: a key-value map of JSON documents."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator

import orjson


def encode_state(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state)


def decode_state(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else orjson.loads(raw)


class StateStore(ABC):
    """Per-customer state documents by key. Backends store them as JSON bytes."""

    @abstractmethod
    def get(self, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def put(self, key: str, state: dict[str, Any]) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def keys(self) -> Iterator[str]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
