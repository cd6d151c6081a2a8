"""What the API needs from the worker it runs in: state, partition ownership, and a producer.

Everything the handlers read or send goes through these two protocols, so the API does not
depend on how the worker consumes (the Faust implementation is in faust_access.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from aiokafka.partitioner import murmur2

from ..state.base import StateStore


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's) gives a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class StateAccess(Protocol):
    def partition_count(self) -> int:
        """Partitions of the customer-keyed input topics (co-partitioned)."""
        ...

    def partition_for(self, key: bytes) -> int:
        """The input topics' partition of a customer key."""
        ...

    def local_store(self, partition: int) -> StateStore | None:
        """The partition's state, or None if this worker does not own it now."""
        ...

    def owner_url(self, partition: int) -> str | None:
        """Base URL of the web server of the worker owning the partition (None: no owner now)."""
        ...

    def self_url(self) -> str:
        """Base URL of this worker's web server, as the others know it."""
        ...

    def worker_urls(self) -> list[str]:
        """Every worker of the group (this one included), for scatter/gather."""
        ...

    def local_partitions(self) -> list[int]:
        """The partitions this worker owns now."""
        ...


class Produced(NamedTuple):
    topic: str
    partition: int
    offset: int


class Publisher(Protocol):
    async def send(self, topic: str, key: bytes, value: bytes) -> Produced:
        """Produce one record and wait for the broker's acknowledgement."""
        ...


@dataclass
class MemoryStateAccess:
    """Partitions held in memory, split between named workers: for tests and the simulator."""

    stores: dict[int, StateStore]
    owners: dict[int, str]  # partition -> worker URL
    url: str = "http://worker-1"

    def partition_count(self) -> int:
        return len(self.stores)

    def partition_for(self, key: bytes) -> int:
        return key_partition(key, self.partition_count())

    def local_store(self, partition: int) -> StateStore | None:
        return self.stores.get(partition) if self.owners.get(partition) == self.url else None

    def owner_url(self, partition: int) -> str | None:
        return self.owners.get(partition)

    def self_url(self) -> str:
        return self.url

    def worker_urls(self) -> list[str]:
        return sorted(set(self.owners.values()) | {self.url})

    def local_partitions(self) -> list[int]:
        return sorted(p for p, owner in self.owners.items() if owner == self.url)


@dataclass
class MemoryPublisher:
    """Keeps what was produced, by topic; partitions as Kafka's default partitioner gives them."""

    partitions: int = 1
    sent: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)

    async def send(self, topic: str, key: bytes, value: bytes) -> Produced:
        records = self.sent.setdefault(topic, [])
        records.append((key, value))
        return Produced(topic, key_partition(key, self.partitions), len(records) - 1)

    def values(self, topic: str) -> Iterable[bytes]:
        return (value for _, value in self.sent.get(topic, []))
