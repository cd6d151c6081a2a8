"""State-store keys: a namespace tag, then an id.

Ids come from input (a customer id is whatever a record says), and the store also
holds the pipeline's own documents (outboxes, the close index). So a key is never
built by joining strings: it is a :class:`StateKey`, a namespace and an id, stored
as the namespace's one-byte tag, ``:``, then the id's UTF-8 bytes. The prefix has a
fixed width and comes first, so an id of any content (NUL, ``:``, another tag) can
only ever name a key of its own namespace, and a scan of one namespace walks only
its keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from ..schemas.base import DEFAULT_ORG

if TYPE_CHECKING:
    from .base import StateStore  # which imports this module

# Surrogates survive the round trip too: the encoding is total and one-to-one on str.
_ERRORS = "surrogatepass"


class Namespace(Enum):
    """Every kind of document in a state store, by tag."""

    CUSTOMER = "c"  # a customer's state (engine/core.py), by customer id (default organisation; see Customer)
    OUTBOX = "o"  # a customer's recent outputs, for re-emission (pipeline/topology.py), by customer id
    ORG_CUSTOMER = "C"  # the same, for a customer of any other organisation, by org-qualified id (Customer)
    ORG_OUTBOX = "O"
    CLOSE_DIRECTORY = "d"  # a partition's pending close slots and recent ticks (pipeline/close_index.py)
    CLOSE_SLOT = "s"  # a slot's entry counters, by "partition:slot|milestone"
    CLOSE_ENTRY = "e"  # one customer's cycle to close, by "partition:slot|milestone:seq"
    CLOSE_TICK = "t"  # whom a close tick closed, by "partition:offset"
    HISTORY = "h"  # a customer's recent contributions to one milestone, by Customer.qualified + milestone id
    LEADERBOARD = "l"  # one leaderboard entry: milestone, target, cycle, descending value, customer (keys only; local)
    LEADERBOARD_COUNT = "n"  # entries per value bucket, as older stores kept them: no longer read or written
    BACKFILL = "b"  # a partition's backfill marks, by partition, and its runs, by "partition|milestone" (backfill.py)

    # Each member's stored prefix, set once below: read as an attribute, not looked up in a dict by
    # the member (an Enum's __hash__ is a Python call, paid by every key made).
    _stored_prefix: bytes

    @property
    def prefix(self) -> bytes:
        return self._stored_prefix

    def key(self, id: str) -> StateKey:
        if type(id) is not str:
            return StateKey(self, id)  # which names what is wrong
        return _made(self, id)


# Computed once: a key is encoded several times per input record.
_PREFIXES = {namespace: namespace.value.encode() + b":" for namespace in Namespace}
for _namespace, _prefix in _PREFIXES.items():
    _namespace._stored_prefix = _prefix
_BY_PREFIX = {prefix: namespace for namespace, prefix in _PREFIXES.items()}
PREFIX_BYTES = 2
_LOCAL_ONLY = _PREFIXES[Namespace.LEADERBOARD]


def in_changelog(raw_key: bytes) -> bool:
    """Whether a stored key is sent to the changelog. Leaderboard entries are not: they are derived
    from the customer's state document (pipeline/read_index.py), so a store keeps them locally and a
    restore derives them from the state records it reads (runtime/partitions.py); an event then
    costs the changelog its state and history records, not two more for the entry it moved."""
    return not raw_key.startswith(_LOCAL_ONLY)


class StateKey:
    """A namespace and an id. Immutable; its stored bytes are built once, with the key (a key is
    looked up or written right after it is made, often more than once)."""

    __slots__ = ("namespace", "id", "raw")
    namespace: Namespace
    id: str
    raw: bytes  # as stored: the namespace's prefix, then the id's UTF-8 bytes

    def __init__(self, namespace: Namespace, id: str) -> None:
        if not isinstance(namespace, Namespace) or not isinstance(id, str):
            raise TypeError(f"a state key is a Namespace and a str id, not {namespace!r}, {id!r}")
        set_field = object.__setattr__
        set_field(self, "namespace", namespace)
        set_field(self, "id", id)
        set_field(self, "raw", namespace._stored_prefix + id.encode("utf-8", _ERRORS))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a StateKey is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateKey) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __reduce__(self) -> tuple[type[StateKey], tuple[Namespace, str]]:
        return StateKey, (self.namespace, self.id)  # copies and pickles go through __init__

    def __repr__(self) -> str:
        return f"StateKey(namespace={self.namespace!r}, id={self.id!r})"

    def encode(self) -> bytes:
        return self.raw

    @classmethod
    def decode(cls, raw: bytes) -> StateKey:
        """The key stored as ``raw``; ValueError if it is not one (state from before key namespaces)."""
        namespace = _BY_PREFIX.get(raw[:PREFIX_BYTES])
        if namespace is None:
            raise ValueError(f"{raw[:40]!r} is not a namespaced state key")
        return cls(namespace, raw[PREFIX_BYTES:].decode("utf-8", _ERRORS))


_set_namespace = StateKey.__dict__["namespace"].__set__
_set_id = StateKey.__dict__["id"].__set__
_set_raw = StateKey.__dict__["raw"].__set__


def _made(namespace: Namespace, id: str) -> StateKey:
    """``StateKey(namespace, id)`` for arguments known to be right: without the checks and
    ``object.__setattr__`` calls (a quarter of a key's cost; several keys are made per record)."""
    key = object.__new__(StateKey)
    _set_namespace(key, namespace)
    _set_id(key, id)
    _set_raw(key, namespace._stored_prefix + id.encode("utf-8", _ERRORS))
    return key


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer of an organisation: the same customer id in two organisations is two customers.

    The default organisation's customers keep their documents under the bare customer id in
    CUSTOMER and OUTBOX (as before organisations); any other organisation's live in ORG_CUSTOMER
    and ORG_OUTBOX under ``<length of org id>:<org id><customer id>``, which is one-to-one on any
    pair of strings: no id of either kind, whatever it contains, names another organisation's customer.
    """

    org_id: str
    customer_id: str

    @property
    def state_key(self) -> StateKey:
        if self.org_id == DEFAULT_ORG:
            return Namespace.CUSTOMER.key(self.customer_id)
        return Namespace.ORG_CUSTOMER.key(self._org_qualified())

    @property
    def outbox_key(self) -> StateKey:
        if self.org_id == DEFAULT_ORG:
            return Namespace.OUTBOX.key(self.customer_id)
        return Namespace.ORG_OUTBOX.key(self._org_qualified())

    def _org_qualified(self) -> str:
        return f"{len(self.org_id)}:{self.org_id}{self.customer_id}"

    @property
    def qualified(self) -> str:
        """``<length of org id>:<org id><length of customer id>:<customer id>``: one-to-one on any pair
        of strings, and a prefix of nothing else, so other ids can follow it in a key."""
        return f"{len(self.org_id)}:{self.org_id}{len(self.customer_id)}:{self.customer_id}"

    def history_key(self, milestone_id: str) -> StateKey:
        return Namespace.HISTORY.key(self.qualified + milestone_id)

    @classmethod
    def of_state_key(cls, key: StateKey) -> Customer:
        if key.namespace in (Namespace.CUSTOMER, Namespace.OUTBOX):
            return cls(DEFAULT_ORG, key.id)
        if key.namespace not in (Namespace.ORG_CUSTOMER, Namespace.ORG_OUTBOX):
            raise ValueError(f"{key!r} is not a customer's key")
        length, _, rest = key.id.partition(":")
        return cls(rest[: int(length)], rest[int(length) :])

    def to_json(self) -> str | list[str]:
        """How other documents (the close index) name the customer: the bare id in the default organisation."""
        return self.customer_id if self.org_id == DEFAULT_ORG else [self.org_id, self.customer_id]

    @classmethod
    def from_json(cls, value: str | list[str]) -> Customer:
        return cls(DEFAULT_ORG, value) if isinstance(value, str) else cls(value[0], value[1])


def customers_in(store: StateStore) -> Iterator[Customer]:
    """Every customer with a state document in ``store``, of every organisation."""
    for namespace in (Namespace.CUSTOMER, Namespace.ORG_CUSTOMER):
        for id in store.keys(namespace):
            yield Customer.of_state_key(namespace.key(id))


def encoded(key: StateKey) -> bytes:
    """``key`` as stored; refuses anything but a StateKey, so no caller can pass a string it built."""
    if not isinstance(key, StateKey):
        raise TypeError(f"state keys are StateKey, not {type(key).__name__}")
    return key.raw
