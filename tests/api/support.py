"""The API in-process: a topology over several partitions, each with its own memory store,
split between workers; aiohttp test servers serving it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson

from milestream.api.access import MemoryPublisher, MemoryStateAccess, key_partition
from milestream.pipeline.topology import Processed, Record, Topology
from milestream.settings import Settings
from milestream.state.memory import MemoryStore
from milestream.topics import load_topics

TOKEN = "api-test-token"
PARTITIONS = 4


class Cluster:
    """The pipeline over ``PARTITIONS`` partitions (one memory store each), as the workers run it."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings(api_token=TOKEN)
        self.topics = load_topics(self.settings)
        self.topology = Topology(self.settings, self.topics)
        self.stores = {p: MemoryStore() for p in range(PARTITIONS)}
        self.offsets: dict[str, int] = defaultdict(int)

    def pipe(self, logical: str, key: str | None, value: Any, timestamp: datetime) -> Processed:
        name = self.topics[logical].name
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        partition = key_partition(key.encode(), PARTITIONS) if key is not None else 0
        position = f"{name}/{partition}"
        offset = self.offsets[position]
        self.offsets[position] += 1
        record = Record(name, partition, offset, key.encode() if key else None, raw, timestamp)
        if name == self.topology.definitions_topic:
            return self.topology.process_definition(record)
        return self.topology.process(record, self.stores[partition])

    def tick(self, now: datetime) -> None:
        tick = {"type": "close_tick", "schema_version": 1, "now": now.isoformat()}
        name = self.topics["close-ticks"].name
        for partition, store in self.stores.items():
            offset = self.offsets[f"{name}/{partition}"]
            self.offsets[f"{name}/{partition}"] += 1
            self.topology.process(Record(name, partition, offset, None, orjson.dumps(tick), now), store)

    def access(self, url: str, owners: dict[int, str]) -> MemoryStateAccess:
        return MemoryStateAccess(dict(self.stores), owners, url)

    def single(self) -> MemoryStateAccess:
        return self.access("http://worker-1", {p: "http://worker-1" for p in self.stores})


def publisher() -> MemoryPublisher:
    return MemoryPublisher(PARTITIONS)


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
