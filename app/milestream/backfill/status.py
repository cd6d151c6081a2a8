"""A run's status record on the compacted ``backfills`` topic, and how far the workers have applied it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from ..schemas.backfill import BackfillStatus
from ..schemas.codec import dumps


async def read_status(consumer: Any, topic: str, milestone_id: str, timeout_s: float) -> BackfillStatus | None:
    """The last status record of a milestone (None if it never had a run)."""
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    key = milestone_id.encode()
    found: BackfillStatus | None = None
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await consumer.position(tp) < end:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError
        for messages in (await consumer.getmany(tp, timeout_ms=500)).values():
            for message in messages:
                if message.key == key and message.value is not None:
                    found = BackfillStatus.model_validate_json(message.value)
    return found


async def write_status(producer: Any, topic: str, status: BackfillStatus) -> None:
    value = dumps(status.model_dump(mode="json"))
    await (await producer.send(topic, value, key=status.milestone_id.encode()))


async def applied_offsets(admin: Any, group_id: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The worker group's committed offsets on the backfill topic's partitions (-1: none yet)."""
    committed = await admin.list_consumer_group_offsets(group_id, partitions=tps)
    return {tp: (committed[tp].offset if tp in committed and committed[tp] is not None else -1) for tp in tps}
