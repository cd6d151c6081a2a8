"""StateAccess and Publisher for the Faust worker (worker/app.py): its ``customer-state`` table
and Faust's partition assignor, which knows every worker's web server and partitions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..state.base import StateStore
from .access import Produced, key_partition


class PartitionTableStore(StateStore):
    """One partition of the worker's state table, read-only: the RocksDB database Faust keeps
    for it (a seek per scan). On a table without one database per partition (memory://, for
    development) the lowest local partition stands for them all."""

    def __init__(self, table: Any, partition: int, stands_for_all: bool) -> None:
        self.table = table
        self.partition = partition
        self.stands_for_all = stands_for_all

    def _db(self) -> Any:
        dbs = getattr(self.table.data, "_dbs", None)
        return None if dbs is None else dbs.get(self.partition)

    def _get(self, raw_key: bytes) -> bytes | None:
        if getattr(self.table.data, "_dbs", None) is None:
            return self.table.get(raw_key) if self.stands_for_all else None
        db = self._db()
        return None if db is None else db.get(raw_key)

    def _put(self, raw_key: bytes, raw_value: bytes) -> None:
        raise RuntimeError("the API reads state; only the pipeline writes it")

    def _delete(self, raw_key: bytes) -> None:
        raise RuntimeError("the API reads state; only the pipeline writes it")

    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        return self._scan_sorted(prefix, prefix)

    def _scan_sorted(self, prefix: bytes, start: bytes) -> Iterator[bytes]:
        if getattr(self.table.data, "_dbs", None) is None:
            if not self.stands_for_all:
                return
            yield from sorted(k for k in self.table.keys() if k.startswith(prefix) and k >= start)
            return
        db = self._db()
        if db is None:
            return
        try:
            keys = db.keys(from_key=start)  # rocksdict
        except TypeError:  # another RocksDB binding: no seek
            keys = sorted(k for k in db.keys() if k >= start)
        for raw_key in keys:
            if not isinstance(raw_key, bytes) or not raw_key.startswith(prefix):
                return
            yield raw_key


class FaustStateAccess:
    def __init__(self, app: Any, table: Any, input_topic: str, partitions: int) -> None:
        self.app = app
        self.table = table
        self.input_topic = input_topic
        self.partitions = partitions

    def _changelog_topic(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def partition_count(self) -> int:
        return self.partitions

    def partition_for(self, key: bytes) -> int:
        return key_partition(key, self.partitions)

    def local_partitions(self) -> list[int]:
        if getattr(self.app, "rebalancing", False):
            return []  # a partition being moved or recovered is nobody's to answer for yet
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.input_topic)

    def local_store(self, partition: int) -> StateStore | None:
        local = self.local_partitions()
        if partition not in local:
            return None
        return PartitionTableStore(self.table, partition, stands_for_all=partition == local[0])

    def _distribution(self) -> dict[str, list[int]]:
        topic = self._changelog_topic()
        return {
            str(host).rstrip("/"): list(assignment.get(topic, ()))
            for host, assignment in self.app.assignor.table_metadata(topic).items()
        }

    def owner_url(self, partition: int) -> str | None:
        for host, partitions in self._distribution().items():
            if partition in partitions:
                return host
        return None

    def self_url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def worker_urls(self) -> list[str]:
        return sorted(set(self._distribution()) | {self.self_url()})


class FaustPublisher:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def send(self, topic: str, key: bytes, value: bytes) -> Produced:
        metadata = await self.app.producer.send_and_wait(topic, key, value, None, None, None)
        return Produced(topic, metadata.partition, metadata.offset)
