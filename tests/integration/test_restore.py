"""Restoring a partition's store from the real changelog topic (runtime/partitions.py): the
leaderboard entries, which are never in the changelog, derived from the state records restored; and a
real worker's stores, which keep no write-ahead log, after a kill -9."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaProducer

from milestream.kafka_client import client_options
from milestream.pipeline.driver import TopologyTestDriver
from milestream.runtime.partitions import PartitionStores, changelog_offset
from milestream.state.keys import Customer, Namespace, in_changelog
from milestream.topics import apply_topics, changelog_topics, load_topics
from tests.factories import at, live_window, monthly_gross_definition, transaction
from tests.support.worker import (
    WorkerProcess,
    consume,
    create_topics,
    isolated_settings,
    produce,
    wait_for_commits,
    wait_until_balanced,
)

pytestmark = pytest.mark.kafka

JAN = "2024-01-05T10:00:00+05:30"


def processed_store(amounts: list[str]) -> dict[bytes, bytes]:
    """Everything a store holds after one customer's transactions on a milestone with a leaderboard."""
    driver = TopologyTestDriver()
    definition = monthly_gross_definition("m-board", settings={"leaderboard": True})
    driver.pipe("definitions", "m-board", definition, timestamp=at(JAN))
    for n, amount in enumerate(amounts):
        driver.pipe("transactions", "rc-1", transaction("rc-1", amount, JAN, n), timestamp=at(JAN))
    return dict(driver.store._data)  # type: ignore[attr-defined]


async def send(settings, topic: str, records: dict[bytes, bytes]) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        for key, value in records.items():
            await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


def entries(store) -> set[bytes]:
    return set(store._scan(Namespace.LEADERBOARD.prefix))


def test_a_restore_derives_the_entries_from_scratch_then_from_the_tail_and_redoes_one_cut_short(
    kafka_bootstrap, tmp_path
):
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    create_topics(settings)
    changelog = changelog_topics(settings, load_topics(settings))
    asyncio.run(apply_topics(settings, changelog))  # as the worker does at start-up
    (topic,) = changelog
    first = processed_store(["100"])
    second = processed_store(["100", "250"])
    first_entries = {k for k in first if not in_changelog(k)}
    second_entries = {k for k in second if not in_changelog(k)}
    assert first_entries and second_entries and not first_entries & second_entries  # the customer moved
    state_key = Customer("default", "rc-1").state_key.raw

    # A store cut short while restoring from scratch: data, no changelog offset. It is rebuilt.
    stores = PartitionStores(settings, topic, 8)
    stores.folder.mkdir(parents=True)
    leftover = stores._open(0)
    leftover.write({b"c:someone-else": b"{}"})
    leftover.close()
    asyncio.run(send(settings, topic, {k: v for k, v in first.items() if in_changelog(k)}))
    asyncio.run(stores.assign([0]))
    store = stores[0]
    assert store._get(b"c:someone-else") is None
    assert store._get(state_key) == first[state_key]
    assert entries(store) == first_entries
    offset = changelog_offset(store)
    assert offset > 0

    # The tail: the customer's next state moves their entry.
    stores.revoke([0])
    asyncio.run(send(settings, topic, {state_key: second[state_key]}))
    asyncio.run(stores.assign([0]))
    store = stores[0]
    assert changelog_offset(store) > offset
    assert store._get(state_key) == second[state_key]
    assert entries(store) == second_entries
    stores.close()


def restored_records(worker: WorkerProcess) -> float:
    found = re.search(r"^milestream_restored_records_total (\S+)$", worker.http("/metrics"), re.MULTILINE)
    assert found is not None
    return float(found.group(1))


def test_a_worker_killed_restores_from_the_changelog_what_its_store_had_not_flushed(kafka_bootstrap, tmp_path):
    """Killed at once, a worker's stores have lost their writes since the last flush, offsets
    included: the next worker restores them from the changelog and the state is whole. Killed once
    ``MILESTREAM_STATE_FLUSH_INTERVAL_S`` has passed, idle meanwhile, nothing is left to restore."""
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", state_flush_interval_s=3.0)
    create_topics(settings)
    now = datetime.now(timezone.utc)
    recent = (now - timedelta(minutes=5)).isoformat()
    first = WorkerProcess(settings, tmp_path / "first.log")
    first.start()
    produce(settings, [("definitions", "m-flush", monthly_gross_definition("m-flush", **live_window(now)))])
    first.wait_for_definition("m-flush")
    customers = [f"flush-{n}" for n in range(40)]
    produce(settings, [("transactions", c, transaction(c, "3000", recent, 1)) for c in customers])
    wait_for_commits(settings, "transactions")
    first.kill()

    second = WorkerProcess(settings, tmp_path / "second.log")
    second.start()
    wait_until_balanced([second], 8)  # every store restored
    assert restored_records(second) > 0
    # The state is whole: each customer's second transaction crosses the target (3,000 + 3,000).
    produce(settings, [("transactions", c, transaction(c, "3000", recent, 2)) for c in customers])
    achieved = consume(
        settings,
        "promotions",
        lambda seen: {e["customer_id"] for e in seen if e["kind"] == "achievement"} >= set(customers),
    )
    assert sorted(e["customer_id"] for e in achieved if e["kind"] == "achievement") == sorted(customers)
    wait_for_commits(settings, "transactions")
    time.sleep(settings.state_flush_interval_s + 2)  # idle: the worker's loop flushes what waited
    second.kill()

    third = WorkerProcess(settings, tmp_path / "third.log")
    third.start()
    wait_until_balanced([third], 8)
    assert restored_records(third) == 0
    third.stop()
