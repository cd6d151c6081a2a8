"""A batch's view of a partition's store: reads fall through, writes stay in memory.

The batch runtime (runtime/) processes a batch of records against an
:class:`OverlayStore` over the partition's RocksDB store. Every key a batch
writes is kept once, with its last value, however often the batch wrote it: the
checkpoint then sends one changelog record per changed key and writes them to
RocksDB in one write batch (runtime/checkpoint.py).

Processing one record may raise half-way (a bug, retried in place by
pipeline/attempts.py). :meth:`begin` and :meth:`rollback` undo that record's
writes, so the retry starts from the state the record found.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import Listener, StateStore
from .keys import in_changelog

_ABSENT = object()  # a key the batch had not written before the record began


class OverlayStore(StateStore):
    def __init__(self, base: StateStore) -> None:
        self.base = base
        self.changes: dict[bytes, bytes | None] = {}  # None: deleted
        self.local: set[bytes] = set()  # the keys of ``changes`` not sent to the changelog (state/keys.py)
        self._undo: dict[bytes, object] | None = None

    # -- one record's writes, undone if processing it raises
    def begin(self) -> None:
        self._undo = {}

    def rollback(self) -> None:
        for raw_key, previous in (self._undo or {}).items():
            if previous is _ABSENT:
                del self.changes[raw_key]
                self.local.discard(raw_key)
            else:
                self.changes[raw_key] = previous  # type: ignore[assignment]
        self._undo = None

    def take_changes(self) -> tuple[dict[bytes, bytes | None], set[bytes]]:
        """Every key written and its last value; of those, the keys not sent to the changelog."""
        changes, local = self.changes, self.local
        self.changes, self.local, self._undo = {}, set(), None
        return changes, local

    # -- StateStore
    def listen(self, listener: Listener, prefix: bytes = b"") -> None:
        raise TypeError("a batch's overlay is never written to: listen to the store under it")

    def _remember(self, raw_key: bytes) -> None:
        if self._undo is not None and raw_key not in self._undo:
            self._undo[raw_key] = self.changes.get(raw_key, _ABSENT)

    def _get(self, raw_key: bytes) -> bytes | None:
        if raw_key in self.changes:
            return self.changes[raw_key]
        return self.base._get(raw_key)

    def _put(self, raw_key: bytes, raw_value: bytes) -> None:
        self._written(raw_key)
        self.changes[raw_key] = raw_value

    def _delete(self, raw_key: bytes) -> None:
        self._written(raw_key)
        self.changes[raw_key] = None

    def _written(self, raw_key: bytes) -> None:
        self._remember(raw_key)
        if not in_changelog(raw_key):
            self.local.add(raw_key)

    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        written = {k: v for k, v in self.changes.items() if k.startswith(prefix)}
        merged = set(self.base._scan(prefix)) | set(written)
        for raw_key in sorted(merged):
            if written.get(raw_key, b"") is not None:
                yield raw_key
