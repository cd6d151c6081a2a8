"""``milestream backfill`` through the real broker, a real worker and the real command.

A milestone is created "today" with its start three months back (``backfill: true``: created to be
backfilled). Transactions and returns of those three months are already on the topics, applied by
the worker before the milestone existed; more arrive after its creation, and during the backfill. The backfill is killed
(SIGKILL) half-way through its copying and started again. In the end the milestone's outputs
must be exactly those ``milestream simulate`` computes over the same records with the milestone
defined from its start: the same ids, values and cycles, each once. A second run emits nothing.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from milestream import simulate
from milestream.kafka_client import client_options
from milestream.worker.web import authorization_header
from tests.support.worker import (
    WorkerProcess,
    consume_quietly,
    create_topics,
    isolated_settings,
    produce,
    settings_env,
    topic,
    two_workers,
    wait_for_commits,
    wait_until_balanced,
)

pytestmark = pytest.mark.kafka

MILESTONE = "m-backdated"
CUSTOMERS = 300
PER_CUSTOMER = 40  # past transactions each: 12,000 records to copy


def month_start(moment: datetime, back: int) -> datetime:
    """The first day of the month ``back`` months before ``moment`` (negative: after)."""
    months = moment.year * 12 + moment.month - 1 - back
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=timezone.utc)


NOW = datetime.now(timezone.utc)
START = month_start(NOW, 3)


def definition() -> dict:
    return {
        "type": "milestone_definition",
        "milestone_id": MILESTONE,
        "name": "Quarterly spender",
        "starts_at": START.isoformat(),
        "ends_at": month_start(NOW, -2).isoformat(),
        "timezone": "UTC",
        "cycles": {"kind": "calendar", "frequency": "monthly", "start_date": START.date().isoformat(), "count": 5},
        "settings": {"line_item_return": "prorate", "buffer_days": 1},
        "backfill": True,  # created to be backfilled: live records wait for the run
        "group": {
            "targets": [
                {
                    "target_id": "spend",
                    "name": "Spend 1200",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": "1200",
                    "sub_targets": [{"name": "Halfway", "criterion": "percentage", "value": "50"}],
                }
            ]
        },
    }


def txn(customer: str, n: str, when: datetime, amount: str) -> dict:
    return {
        "type": "transaction",
        "event_id": f"t-{customer}-{n}",
        "customer_id": customer,
        "event_time": when.isoformat(),
        "bill_id": f"b-{customer}-{n}",
        "gross_amount": amount,
        "line_items": [{"line_id": "l1", "sku": "sku-1", "gross_amount": amount}],
    }


def past_records() -> list[dict]:
    """Three months (and a week before the start, which must not count) of activity, in time order."""
    span = NOW - START + timedelta(days=7)
    records = []
    for c in range(CUSTOMERS):
        customer = f"c{c:04d}"
        for n in range(PER_CUSTOMER):
            when = START - timedelta(days=7) + span * ((n + (c % 7) / 7) / (PER_CUSTOMER + 1)) - timedelta(hours=2)
            records.append(txn(customer, f"p{n}", when, str(50 + (c * 7 + n * 13) % 120)))
            if n % 9 == 4:  # a return of half the bill, a day later
                records.append(
                    {
                        "type": "return",
                        "event_id": f"r-{customer}-{n}",
                        "customer_id": customer,
                        "event_time": (when + timedelta(days=1)).isoformat(),
                        "return_id": f"ret-{customer}-{n}",
                        "bill_id": f"b-{customer}-p{n}",
                        "scope": "line_items",
                        "line_items": [{"line_id": "l1", "amount": "10"}],
                    }
                )
    return sorted(records, key=lambda r: r["event_time"])


TOPICS = {"transaction": "transactions", "return": "returns"}


async def _produce_at_event_time(settings, records: list[dict]) -> None:
    """Each record with its event time as Kafka timestamp, as an upstream system recording it then."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic(settings, TOPICS[r["type"]]),
                orjson.dumps(r),
                key=r["customer_id"].encode(),
                timestamp_ms=int(datetime.fromisoformat(r["event_time"]).timestamp() * 1000),
            )
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def backfill(settings, *args: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-m", "milestream.cli", "backfill", "--milestone", MILESTONE, *args]
    env = {**settings_env(settings), "MILESTREAM_BACKFILL_BATCH_RECORDS": "300"}
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def _statuses(settings, until, timeout: float) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic(settings, "backfills"), **client_options(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(seen):
            for messages in (await consumer.getmany(timeout_ms=50)).values():
                seen.extend(orjson.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return seen


def milestone_events(settings) -> list[dict]:
    return [
        e for e in consume_quietly(settings, "promotions", quiet=8.0, timeout=180) if e.get("milestone_id") == MILESTONE
    ]


def simulated(events: list[dict]) -> list[dict]:
    out = io.BytesIO()
    lines = io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in sorted(events, key=lambda e: e["event_time"])))
    simulate.run([definition()], lines, out, io.StringIO(), until=datetime.now(timezone.utc))
    found = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return [e for e in found if e.get("type") == "milestone_event" and e["milestone_id"] == MILESTONE]


def comparable(events: list[dict]) -> list[tuple]:
    return sorted((e["event_id"], e["kind"], e["achieved_value"], e["cycle"]["index"]) for e in events)


def test_a_backdated_milestone_gets_exactly_what_the_simulator_computes(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", close_tick_interval_s=2.0)
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        past = past_records()
        asyncio.run(_produce_at_event_time(settings, past))
        wait_for_commits(settings, "transactions", timeout=120)

        produce(settings, [("definitions", MILESTONE, definition())])
        worker.wait_for_definition(MILESTONE)
        after = [txn(f"c{c:04d}", "after", datetime.now(timezone.utc), "700") for c in range(0, CUSTOMERS, 3)]
        asyncio.run(_produce_at_event_time(settings, after))

        # Killed half-way through its copying.
        running = backfill(settings, wait=False)
        copying = asyncio.run(
            _statuses(
                settings,
                lambda s: (
                    running.poll() is not None or any(x["state"] == "copying" and x["records_copied"] > 0 for x in s)
                ),
                120,
            )
        )
        assert running.poll() is None, running.communicate()[1]
        os.kill(running.pid, signal.SIGKILL)
        running.wait(10)
        last = copying[-1]
        assert last["state"] == "copying" and 0 < last["records_copied"] < last["records_total"], last

        during = [txn(f"c{c:04d}", "during", datetime.now(timezone.utc), "900") for c in range(1, CUSTOMERS, 3)]
        asyncio.run(_produce_at_event_time(settings, during))
        resumed = backfill(settings)
        assert resumed.returncode == 0, resumed.stderr
        assert f"(run {last['run_id']})" in resumed.stderr and "done" in resumed.stderr

        events = milestone_events(settings)
        expected = simulated(past + after + during)
        assert len({e["kind"] for e in expected}) == 3  # achievements, sub-targets and closes to compare
        assert len({e["event_id"] for e in events}) == len(events)  # each once
        # Awards and closes alike, values included: live records during the run waited for it.
        assert comparable(events) == comparable(expected)
        assert any(e.get("backfilled") and e["kind"] == "cycle_close" for e in events)

        status = backfill(settings, "--status")
        assert status.returncode == 0 and ": done" in status.stderr and "every copy applied" in status.stderr

        again = backfill(settings)  # a second run copies everything again and applies nothing
        assert again.returncode == 0, again.stderr
        assert comparable(milestone_events(settings)) == comparable(events)
    finally:
        worker.stop()


def test_a_dry_run_prints_the_simulation_and_publishes_nothing(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    create_topics(settings)
    records = [txn("c1", str(n), START + timedelta(days=3 + n), "600") for n in range(5)]
    asyncio.run(_produce_at_event_time(settings, records))
    produce(settings, [("definitions", MILESTONE, definition())])
    result = backfill(settings, "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert comparable(printed) == comparable(simulated(records))
    assert "5 records read" in result.stderr and "nothing was published" in result.stderr
    assert consume_quietly(settings, "backfill", quiet=1.0, timeout=10) == []


async def _delete_first(settings, logical: str, partition: int, before: int) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic(settings, logical), partition): RecordsToDelete(before)})
    finally:
        await admin.close()


def test_topics_that_no_longer_hold_the_start_are_named_and_nothing_is_copied(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    create_topics(settings)
    records = [txn("c1", str(n), START + timedelta(days=3 + n), "600") for n in range(5)]
    asyncio.run(_produce_at_event_time(settings, records))
    produce(settings, [("definitions", MILESTONE, definition())])
    # Retention took the first two of c1's transactions.
    (_, c1_partition, _), *_ = produce(settings, [("transactions", "c1", txn("c1", "x", NOW, "1"))])
    asyncio.run(_delete_first(settings, "transactions", c1_partition, 2))
    result = backfill(settings)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"{topic(settings, 'transactions')}/{c1_partition} holds data from" in line
    assert "offsets before 2 are deleted" in line and "nothing was copied" in line
    assert consume_quietly(settings, "backfill", quiet=1.0, timeout=10) == []


def _call(settings, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.web_port}{path}",
        data=orjson.dumps(body) if body is not None else None,
        method=method,
        headers={**authorization_header(settings), "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_the_api_creates_a_backdated_milestone_with_its_backfill(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", close_tick_interval_s=2.0)
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        records = [
            txn(f"a{c:02d}", str(n), START + timedelta(days=2 + 9 * n + c % 5), str(300 + 37 * ((c + n) % 9)))
            for c in range(20)
            for n in range(9)
        ]
        asyncio.run(_produce_at_event_time(settings, records))
        wait_for_commits(settings, "transactions", timeout=120)
        status, body = _call(settings, "PUT", f"/milestones/{MILESTONE}?backfill=maybe", definition())
        assert status == 400 and "backfill must be true or false" in body["error"]
        status, body = _call(settings, "PUT", f"/milestones/{MILESTONE}?backfill=true", definition())
        assert status == 202 and body["backfill"] == f"/milestones/{MILESTONE}/backfill", body
        deadline = time.monotonic() + 120
        while True:
            status, progress = _call(settings, "GET", body["backfill"])
            state = (progress.get("status") or {}).get("state")
            if state == "done" or progress.get("error") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200 and state == "done" and progress["error"] is None, progress
        assert progress["status"]["records_copied"] == progress["status"]["records_total"] == len(records)
        events = milestone_events(settings)
        assert comparable(events) == comparable(simulated(records))
    finally:
        worker.stop()


def test_two_workers_share_a_backfill_and_one_killed_mid_run_changes_nothing(kafka_bootstrap, tmp_path):
    """Each worker applies the copies of its partitions; one SIGKILLed while the run is under way
    leaves its partitions to the other, then comes back: the outputs stay the simulator's, and a
    copy applied again after the kill (its batch was not committed) re-sends only identical events."""
    workers = two_workers(kafka_bootstrap, tmp_path, close_tick_interval_s=2.0, session_timeout_s=6.0)
    settings = workers[0].settings
    for worker in workers:
        worker.start()
    try:
        wait_until_balanced(workers, 8)
        past = [
            txn(
                f"w{c:03d}", str(n), START + timedelta(days=1 + 3 * n + c % 3, hours=c % 11), str(60 + (7 * c + n) % 90)
            )
            for c in range(120)
            for n in range(30)
        ]
        asyncio.run(_produce_at_event_time(settings, past))
        wait_for_commits(settings, "transactions", timeout=120)
        produce(settings, [("definitions", MILESTONE, definition())])
        for worker in workers:
            worker.wait_for_definition(MILESTONE)
        running = backfill(settings, wait=False)
        asyncio.run(
            _statuses(settings, lambda s: running.poll() is not None or any(x["state"] == "copying" for x in s), 120)
        )
        assert running.poll() is None  # the run is under way
        workers[0].kill()
        during = [txn(f"w{c:03d}", "during", datetime.now(timezone.utc), "400") for c in range(0, 120, 4)]
        asyncio.run(_produce_at_event_time(settings, during))
        assert running.wait(240) == 0, running.stderr.read() if running.stderr else ""
        workers[0].start()
        events = milestone_events(settings)
        by_id: dict[str, dict] = {}
        for event in events:
            assert by_id.setdefault(event["event_id"], event) == event  # a re-sent event is the same event
        assert comparable(list(by_id.values())) == comparable(simulated(past + during))
    finally:
        for worker in workers:
            worker.stop()
