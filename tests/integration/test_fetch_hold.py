"""The batch consumer fetches a busy partition again as soon as its records are read, even while the
worker's other partitions are idle (runtime/clients.py, ``fetch_only_after_reads``).

Real broker, real aiokafka consumer, over two topics: one with records, one idle. A record waits
unread longer than aiokafka's 100 ms prefetch backoff (a batch and its checkpoint taking that long);
the next record of the busy topic is produced just after it is read. Without the hold, the fetcher has
meanwhile sent a fetch of the idle topic alone, which the broker holds for the fetch's maximum wait
(here 1 s), and the next record arrives only after it. With the hold, it arrives at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from milestream.runtime.clients import fetch_only_after_reads

pytestmark = pytest.mark.kafka

MAX_WAIT_MS = 1000
UNREAD_S = 0.4  # more than aiokafka's 100 ms prefetch backoff


async def _next_record_after_an_unread_one(bootstrap: str, hold: bool) -> float:
    """Seconds from reading the record that waited unread to receiving the record produced after it."""
    tag = uuid.uuid4().hex[:8]
    busy, idle = f"fetch-hold-busy-{tag}", f"fetch-hold-idle-{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(busy, 1, 1), NewTopic(idle, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(
        busy,
        idle,
        bootstrap_servers=bootstrap,
        group_id=f"fetch-hold-{tag}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=MAX_WAIT_MS,
        metadata_max_age_ms=1000,
    )
    await producer.start()
    await consumer.start()
    try:
        if hold:
            fetch_only_after_reads(consumer)

        async def read(count: int) -> list[bytes]:
            values: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(values) < count and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    values += [r.value for r in records]
            assert len(values) == count, f"read {values}, expected {count} records"
            return values

        await producer.send_and_wait(busy, b"first")
        assert await read(1) == [b"first"]  # assigned, positioned and fetching
        await producer.send_and_wait(busy, b"unread")
        await asyncio.sleep(UNREAD_S)  # fetched by now, and not read: a long batch and checkpoint
        assert await read(1) == [b"unread"]
        read_at = time.monotonic()
        await producer.send_and_wait(busy, b"next")
        assert await read(1) == [b"next"]
        return time.monotonic() - read_at
    finally:
        await consumer.stop()
        await producer.stop()


def test_a_busy_partition_is_fetched_again_once_read_while_the_others_are_idle(kafka_bootstrap):
    waited = asyncio.run(_next_record_after_an_unread_one(kafka_bootstrap, hold=True))
    assert waited < 0.3 * MAX_WAIT_MS / 1000, f"the next record took {waited * 1000:.0f} ms"


def test_without_the_hold_the_idle_partitions_fetch_delays_the_busy_one(kafka_bootstrap):
    """aiokafka's own behaviour, which the hold works around: if this ever fails, aiokafka changed and
    ``fetch_only_after_reads`` may no longer be needed."""
    waited = asyncio.run(_next_record_after_an_unread_one(kafka_bootstrap, hold=False))
    assert waited > 0.3 * MAX_WAIT_MS / 1000, f"the next record took only {waited * 1000:.0f} ms"
