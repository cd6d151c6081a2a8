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

from dataclasses import dataclass
from enum import Enum

from ..schemas.base import DEFAULT_ORG

# Surrogates survive the round trip too: the encoding is total and one-to-one on str.
_ERRORS = "surrogatepass"


class Namespace(Enum):
    """Every kind of document in a state store, by tag."""

    CUSTOMER = "c"  # a customer's state (engine/core.py), by customer_ref(org id, customer id)
    OUTBOX = "o"  # a customer's recent outputs, for re-emission (pipeline/topology.py), by customer_ref
    CLOSE_DIRECTORY = "d"  # a partition's pending close slots and recent ticks (pipeline/close_index.py)
    CLOSE_SLOT = "s"  # a slot's entry counters, by "partition:slot|milestone"
    CLOSE_ENTRY = "e"  # one customer's cycle to close, by "partition:slot|milestone:seq"
    CLOSE_TICK = "t"  # whom a close tick closed, by "partition:offset"

    @property
    def prefix(self) -> bytes:
        return self.value.encode() + b":"

    def key(self, id: str) -> StateKey:
        return StateKey(self, id)


_BY_PREFIX = {namespace.prefix: namespace for namespace in Namespace}
PREFIX_BYTES = 2


@dataclass(frozen=True, slots=True)
class StateKey:
    namespace: Namespace
    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, Namespace) or not isinstance(self.id, str):
            raise TypeError(f"a state key is a Namespace and a str id, not {self.namespace!r}, {self.id!r}")

    def encode(self) -> bytes:
        return self.namespace.prefix + self.id.encode("utf-8", _ERRORS)

    @classmethod
    def decode(cls, raw: bytes) -> StateKey:
        """The key stored as ``raw``; ValueError if it is not one (state from before key namespaces)."""
        namespace = _BY_PREFIX.get(raw[:PREFIX_BYTES])
        if namespace is None:
            raise ValueError(f"{raw[:40]!r} is not a namespaced state key")
        return cls(namespace, raw[PREFIX_BYTES:].decode("utf-8", _ERRORS))


_ORG_SEPARATOR = "\x1f"  # ids cannot contain control characters (schemas/base.py Id), so it never collides


def customer_ref(org_id: str, customer_id: str) -> str:
    """The id a customer's documents are stored under: the same customer id in two organisations
    names two customers. A customer of the default organisation keeps their bare id (state from
    before organisations stays valid); any other is ``org_id``, US (0x1F), ``customer_id``."""
    if org_id == DEFAULT_ORG:
        return customer_id
    return f"{org_id}{_ORG_SEPARATOR}{customer_id}"


def split_customer_ref(ref: str) -> tuple[str, str]:
    """(org id, customer id) of a ``customer_ref``."""
    org_id, separator, customer_id = ref.partition(_ORG_SEPARATOR)
    return (org_id, customer_id) if separator else (DEFAULT_ORG, ref)


def encoded(key: StateKey) -> bytes:
    """``key`` as stored; refuses anything but a StateKey, so no caller can pass a string it built."""
    if not isinstance(key, StateKey):
        raise TypeError(f"state keys are StateKey, not {type(key).__name__}")
    return key.encode()
