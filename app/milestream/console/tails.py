"""What the operations page shows: the tail of the dead-letter and late-events topics (the last
``per_partition`` records of each partition, read with a consumer of no group, bounded in time),
and the consumer lag of this worker's partitions from its Prometheus gauge."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..kafka_client import client_options
from ..settings import Settings
from ..tail import decoded

PER_PARTITION = 50


@dataclass(frozen=True)
class TailRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: Any  # JSON, else text


async def read_tail(
    settings: Settings, topic: str, per_partition: int = PER_PARTITION, timeout_s: float = 5.0
) -> list[TailRecord]:
    """The last records of every partition of ``topic`` (committed ones), newest first."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=f"{settings.app_id}-console",
    )
    deadline = time.monotonic() + timeout_s
    await asyncio.wait_for(consumer.start(), timeout_s)
    records: list[TailRecord] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        remaining = set()
        for tp in tps:
            if end[tp] > begin[tp]:
                consumer.seek(tp, max(begin[tp], end[tp] - per_partition))
                remaining.add(tp)
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=300)
            for tp, messages in batches.items():
                for m in messages:
                    if m.offset < end[tp]:
                        key = m.key.decode("utf-8", "replace") if m.key is not None else None
                        records.append(TailRecord(m.partition, m.offset, m.timestamp, key, decoded(m.value)))
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset), reverse=True)
    return records


def original_text(letter: dict[str, Any], field: str, limit: int = 600) -> str | None:
    """A dead letter's original key or value (base64 in the letter), as text."""
    encoded = letter.get(field)
    if not isinstance(encoded, str):
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        return encoded[:limit]
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


def consumer_lag() -> list[tuple[str, int, float]]:
    """(topic, partition, lag) of the partitions this worker reads, from ``milestream_consumer_lag``."""
    rows = []
    for family in metrics.CONSUMER_LAG.collect():
        for sample in family.samples:
            try:
                partition = int(sample.labels.get("partition", "-1"))
            except ValueError:
                partition = -1
            rows.append((sample.labels.get("topic", "?"), partition, sample.value))
    return sorted(rows)
