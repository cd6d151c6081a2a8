"""Through the real broker and worker: customer ids shaped like the worker's own keys touch no one else.

Each partition first gets records whose customer ids name, in the key scheme used before key
namespaces, that partition's close index (``\\x00close:P``) and a victim's outbox
(``<victim>\\x00outbox``); then the victim's purchases. Every victim still gets its achievement,
and nothing fails in processing. (Such ids may also be rejected by the schema: either way, they
must not touch the victims' state.)
"""

import asyncio
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.worker import consume, consume_quietly, produce, topic

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
THIS_MONTH = live_window(NOW)


def when(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


async def produce_to_partitions(settings, records: list[tuple[int, str, dict]]) -> None:
    """Transactions to chosen partitions, in order: the worker checks the key, not the partition."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for partition, customer_id, value in records:
            await producer.send(
                topic(settings, "transactions"), orjson.dumps(value), key=customer_id.encode(), partition=partition
            )
        await producer.flush()
    finally:
        await producer.stop()


def test_ids_shaped_like_internal_keys_leave_every_victim_whole(worker):
    settings = worker.settings
    produce(settings, [("definitions", "m-hostile", monthly_gross_definition("m-hostile", **THIS_MONTH))])
    worker.wait_for_definition("m-hostile")
    partitions = range(8)
    hostile = [
        (p, customer_id, transaction(customer_id, "100", when(30), f"h{p}"))
        for p in partitions
        for customer_id in (f"\x00close:{p}", f"victim-{p}\x00outbox", f"\x00tick:{p}:0")
    ]
    victims = [
        (p, f"victim-{p}", transaction(f"victim-{p}", "3000", when(20 - n), n)) for n in (1, 2) for p in partitions
    ]
    asyncio.run(produce_to_partitions(settings, hostile + victims))

    achieved = consume(
        settings, "promotions", lambda seen: {e["customer_id"] for e in seen} >= {f"victim-{p}" for p in partitions}
    )
    assert sorted(
        e["customer_id"] for e in achieved if e["customer_id"].startswith("victim-") and "\x00" not in e["customer_id"]
    ) == sorted(f"victim-{p}" for p in partitions)
    letters = consume_quietly(settings, "dead-letters", quiet=2.0, timeout=20)
    assert [letter for letter in letters if letter["reason"] == "processing_error"] == []
