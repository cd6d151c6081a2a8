"""The state-store interface the pipeline needs: JSON documents under namespaced keys."""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from mypy_extensions import mypyc_attr

from .keys import PREFIX_BYTES, Namespace, StateKey, encoded

EMPTY_DOCUMENT = b"{}"  # orjson.dumps({})


def encode_state(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state)


def decode_state(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else orjson.loads(raw)


def raw_prefix(namespace: Namespace, id_prefix: str = "") -> bytes:
    """The stored bytes every key of ``namespace`` whose id starts with ``id_prefix`` starts with."""
    if not isinstance(namespace, Namespace):
        raise TypeError(f"scan a Namespace, not {type(namespace).__name__}")
    return namespace.prefix + id_prefix.encode("utf-8", "surrogatepass")


def _after_every(prefix: bytes) -> bytes | None:
    """The first bytes after every key that starts with ``prefix`` (None: no such bytes, for an empty
    prefix or one of 0xff bytes alone)."""
    end = prefix.rstrip(b"\xff")
    return end[:-1] + bytes((end[-1] + 1,)) if end else None


def key_id(raw_key: bytes) -> str:
    """The id of a stored key whose namespace is known (a scan's, a listener's): no key to decode."""
    return raw_key[PREFIX_BYTES:].decode("utf-8", "surrogatepass")


Changes = Mapping[bytes, "bytes | None"]  # stored keys and their new values (None: deleted)
Existed = Mapping[bytes, bool]  # the same keys: whether each held a value before the write
Listener = Callable[[Changes, Existed], None]
Heard = list[tuple[Listener, dict[bytes, "bytes | None"], dict[bytes, bool]]]  # what to tell, after a write


# Other backends (the worker's partition stores) and tests' fault-injecting stores subclass it, in
# the compiled build too.
@mypyc_attr(allow_interpreted_subclasses=True)
class StateStore(ABC):
    """Documents by :class:`StateKey` (state/keys.py). Every backend stores the same bytes:
    the encoded key and the document as JSON; a backend only moves bytes."""

    _listeners: tuple[tuple[bytes, Listener], ...] = ()

    def listen(self, listener: Listener, prefix: bytes = b"") -> None:
        """Call ``listener`` with the raw changes to keys starting with ``prefix`` of every write to
        this store from now on, once they are stored, and whether each key held a value before
        (in-memory mirrors of part of a store, e.g. the API's leaderboard counts, which count keys
        gained and lost). A batch's overlay is not a store writes reach: its changes are written at
        the checkpoint."""
        self._listeners = (*self._listeners, (prefix, listener))

    def _before_write(self, changes: Changes, ordered: list[bytes] | None = None) -> Heard:
        """Before a write: for each listener, its part of ``changes`` and what those keys held.
        ``ordered``: the keys of ``changes`` in order, if the caller sorted them; a listener's keys
        are then one run of them, found by bisection (a checkpoint's keys are mostly others')."""
        heard: Heard = []
        for prefix, listener in self._listeners:
            after = _after_every(prefix) if ordered is not None else None
            if ordered is not None and after is not None:
                run = ordered[bisect_left(ordered, prefix) : bisect_left(ordered, after)]
                theirs = {k: changes[k] for k in run}
            else:
                theirs = {k: v for k, v in changes.items() if k.startswith(prefix)}
            if theirs:
                heard.append((listener, theirs, self._existing(list(theirs))))
        return heard

    def _existing(self, raw_keys: list[bytes]) -> dict[bytes, bool]:
        return {raw_key: value is not None for raw_key, value in zip(raw_keys, self._get_many(raw_keys), strict=True)}

    def _get_many(self, raw_keys: list[bytes]) -> list[bytes | None]:
        """The stored values of ``raw_keys``, in order (a sorted backend reads them in one call)."""
        return [self._get(raw_key) for raw_key in raw_keys]

    @staticmethod
    def _notify(heard: Heard) -> None:
        for listener, changes, existed in heard:
            listener(changes, existed)

    def get(self, key: StateKey) -> dict[str, Any] | None:
        return decode_state(self._get(encoded(key)))

    def put(self, key: StateKey, state: dict[str, Any]) -> None:
        self._put(encoded(key), encode_state(state))

    def put_empty(self, key: StateKey) -> None:
        """``put(key, {})``: a key that says everything (an index entry), with its document
        already encoded."""
        self._put(encoded(key), EMPTY_DOCUMENT)

    def has(self, key: StateKey) -> bool:
        """Whether a document is stored under ``key`` (without decoding it)."""
        return self._get(encoded(key)) is not None

    def delete(self, key: StateKey) -> None:
        self._delete(encoded(key))

    def keys(self, namespace: Namespace) -> Iterator[str]:
        """The ids of one namespace's keys (in no set order: the worker's table has a store per partition)."""
        for raw in self._scan(raw_prefix(namespace)):
            yield key_id(raw)

    def scan(self, namespace: Namespace, prefix: str = "", start: str | None = None) -> Iterator[str]:
        """The ids of ``namespace`` that start with ``prefix``, in key order (UTF-8 bytes), from
        ``start`` on (inclusive) when given. Sorted backends seek; the others sort."""
        first = raw_prefix(namespace, prefix)
        raw_start = raw_prefix(namespace, start) if start is not None else first
        for raw in self._scan_sorted(first, max(first, raw_start)):
            yield key_id(raw)

    def scan_documents(self, namespace: Namespace, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        """``scan``'s ids with their documents, read in the same pass (a sorted backend reads each
        key and value together, where ``get`` per id would seek again)."""
        for raw_key, raw_value in self._scan_items(raw_prefix(namespace, prefix)):
            yield key_id(raw_key), orjson.loads(raw_value)

    def _scan_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Stored keys starting with ``prefix`` and their values, in byte order."""
        for raw_key in self._scan_sorted(prefix, prefix):
            raw_value = self._get(raw_key)
            if raw_value is not None:
                yield raw_key, raw_value

    def _scan_sorted(self, prefix: bytes, start: bytes) -> Iterator[bytes]:
        """Stored keys starting with ``prefix``, from ``start`` on, in byte order."""
        return iter(sorted(k for k in self._scan(prefix) if k >= start))

    @abstractmethod
    def _get(self, raw_key: bytes) -> bytes | None: ...

    @abstractmethod
    def _put(self, raw_key: bytes, raw_value: bytes) -> None: ...

    @abstractmethod
    def _delete(self, raw_key: bytes) -> None: ...

    @abstractmethod
    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        """Every stored key that starts with ``prefix``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
