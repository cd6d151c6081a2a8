"""A topology test driver: the whole pipeline in-process, no broker.

Like Kafka Streams' TopologyTestDriver: pipe records into named input topics,
read what the topology produced on named output topics. The worker runs the
very same :class:`~milestream.pipeline.topology.Topology` against a real
broker, so what passes here is what runs there.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import orjson

from ..settings import Settings
from ..state.base import StateStore
from ..state.memory import MemoryStore
from ..topics import load_topics
from .topology import Processed, Record, Topology


class TopologyTestDriver:
    def __init__(
        self, settings: Settings | None = None, store: StateStore | None = None, *, keep_outbox: bool = True
    ) -> None:
        """``keep_outbox=False``: the topology as the worker runs it, whose checkpoint writes the state
        only once the outputs are acknowledged, so no outbox is kept (``Topology``)."""
        self.settings = settings or Settings()
        self.topics = load_topics(self.settings)
        self.topology = Topology(self.settings, self.topics, keep_outbox=keep_outbox)
        self.store = store or MemoryStore()
        self._offsets: dict[str, int] = defaultdict(int)
        self._logical = {spec.name: spec.logical for spec in self.topics.values()}  # topic name: its logical name
        self.produced: dict[str, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)

    def topic(self, logical: str) -> str:
        return self.topics[logical].name

    def pipe(
        self,
        logical_topic: str,
        key: str | bytes | None,
        value: Any,
        *,
        timestamp: datetime | None = None,
        partition: int = 0,
        offset: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Processed:
        """Feed one record; ``value`` may be bytes or JSON-able data."""
        name = self.topic(logical_topic)
        raw = value if isinstance(value, (bytes, type(None))) else orjson.dumps(value, default=str)
        key_bytes = key.encode() if isinstance(key, str) else key
        position = f"{name}/{partition}"
        if offset is None:
            offset = self._offsets[position]
        self._offsets[position] = max(self._offsets[position], offset + 1)
        moment = timestamp or datetime.now(timezone.utc)
        record = Record(name, partition, offset, key_bytes, raw, moment, tuple(headers or ()))
        if name == self.topology.definitions_topic:
            processed = self.topology.process_definition(record)
        else:
            processed = self.topology.process(record, self.store)
        for out in processed.records:
            self.produced[out.topic].append((out.key, out.value))
        # Records the topology sends to its own inputs (series reward-change commands) come back, as on a broker.
        for out in processed.records:
            if out.topic in self.topology.series.command_topics:
                self.pipe(
                    self._logical[out.topic],
                    out.key,
                    out.value,
                    timestamp=record.timestamp,
                    partition=out.partition or 0,
                )
        return processed

    def read(self, logical_topic: str) -> list[dict[str, Any]]:
        """Everything produced so far on a topic, decoded, oldest first."""
        return [orjson.loads(value) for _, value in self.produced[self.topic(logical_topic)] if value is not None]
