"""The HTTP API's view of the batch runtime: its partition stores and the group's owners.

A worker answers for the partitions whose stores it holds (restored and
current); for the others, the ownership map the group's assignor hands every
member (runtime/assignor.py) names the worker to forward to.
"""

from __future__ import annotations

from ..api.access import key_partition
from ..runtime.processor import BatchProcessor
from ..state.base import StateStore


class RuntimeStateAccess:
    def __init__(self, processor: BatchProcessor) -> None:
        self.processor = processor

    def partition_count(self) -> int:
        return self.processor.stores.partitions

    def partition_for(self, key: bytes) -> int:
        return key_partition(key, self.partition_count())

    def local_partitions(self) -> list[int]:
        return self.processor.stores.owned()

    def local_store(self, partition: int) -> StateStore | None:
        stores = self.processor.stores
        return stores[partition] if partition in stores else None

    def owner_url(self, partition: int) -> str | None:
        return self.processor.ownership.owners.get(partition)

    def self_url(self) -> str:
        return self.processor.advertised_url

    def worker_urls(self) -> list[str]:
        return sorted(set(self.processor.ownership.workers) | {self.self_url()})
