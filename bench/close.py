"""``python -m bench.close``: how long closing a cycle takes for N enrolled customers (default 1M).

The topology runs in-process on the RocksDB state backend (the same rocksdict
store the worker's tables use), on one partition, with the worker's code path:

1. a monthly milestone with enrolment "none" and one enrolment event per
   customer (every tenth also buys something): each opens the customer's cycle
   and adds it to the close index;
2. close ticks at the cycle's end, each closing ``MILESTREAM_CLOSE_BATCH_SIZE``
   customers and asking for the next, until every customer has its close.

It measures phase 2 (the close) and reports phase 1 (building the index) apart,
with the process's peak memory. There is no broker there: that is the cost of
the close itself. Then the same close on the real worker and a local broker,
for ``BENCH_CLOSE_BROKER_CUSTOMERS`` customers (default 50,000): enrolments are
produced and applied first, then one close tick per partition is produced and
the time until every customer's ``cycle_close`` is on the promotions topic is
measured. The close block of BENCHMARKS.md is rewritten with both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from milestream.pipeline.driver import TopologyTestDriver
from milestream.settings import Settings
from milestream.state.rocksdb import RocksDBStore

from .cluster import Offsets, started_broker
from .procs import Service, free_port, worker_service
from .report import git_revision, machine, write_block

START_MARKER = "<!-- close:start -->"
END_MARKER = "<!-- close:end -->"
CYCLE_START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def definition() -> dict:
    return {
        "type": "milestone_definition",
        "milestone_id": "bench-close",
        "name": "Benchmark close",
        "starts_at": CYCLE_START.isoformat(),
        "ends_at": (CYCLE_START + timedelta(days=365)).isoformat(),
        "timezone": "UTC",
        "enrolment": {"method": "none"},
        "cycles": {"kind": "calendar", "frequency": "monthly", "start_date": "2026-01-01", "count": 12},
        "group": {
            "targets": [
                {
                    "target_id": "spend",
                    "name": "Monthly spend",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": "5000",
                }
            ]
        },
    }


def run(customers: int, folder: Path, batch: int) -> dict:
    store = RocksDBStore(folder / "state")
    driver = TopologyTestDriver(Settings(close_batch_size=batch), store=store)
    driver.pipe("definitions", "bench-close", definition())
    during = CYCLE_START + timedelta(days=10)
    started = time.perf_counter()
    for n in range(customers):
        customer = f"c{n:08d}"
        driver.pipe(
            "enrolments",
            customer,
            orjson.dumps(
                {
                    "type": "enrolment",
                    "event_id": f"e{n}",
                    "customer_id": customer,
                    "event_time": during.isoformat(),
                    "milestone_id": "bench-close",
                }
            ),
            timestamp=during,
        )
        if n % 10 == 0:
            driver.pipe(
                "transactions",
                customer,
                orjson.dumps(
                    {
                        "type": "transaction",
                        "event_id": f"t{n}",
                        "customer_id": customer,
                        "bill_id": f"b{n}",
                        "event_time": during.isoformat(),
                        "gross_amount": "1200",
                    }
                ),
                timestamp=during,
            )
        if n % 100_000 == 99_999:
            print(f"  enrolled {n + 1:,}", flush=True)
    index_seconds = time.perf_counter() - started
    driver.produced.clear()  # keep only the close's outputs in memory
    now = CYCLE_START.replace(month=2)
    tick = orjson.dumps({"type": "close_tick", "schema_version": 1, "now": now.isoformat()})
    ticks_topic = driver.topic("close-ticks")
    started = time.perf_counter()
    ticks = closes = 0
    while True:
        processed = driver.pipe("close-ticks", None, tick, timestamp=now)
        ticks += 1
        closes += sum(1 for e in processed.milestone_events if e["kind"] == "cycle_close")
        driver.produced.clear()
        if not any(r.topic == ticks_topic for r in processed.records):
            break
    close_seconds = time.perf_counter() - started
    store.close()
    return {
        "customers": customers,
        "closes": closes,
        "ticks": ticks,
        "batch": batch,
        "index_seconds": index_seconds,
        "close_seconds": close_seconds,
        "close_rate": closes / close_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def definition_in_the_past(now: datetime) -> dict:
    """The benchmark milestone with one custom cycle that ended yesterday: due at once."""
    body = definition()
    today = now.date()
    body.update(
        {
            "starts_at": (now - timedelta(days=10)).isoformat(),
            "ends_at": (now + timedelta(days=10)).isoformat(),
            "cycles": {
                "kind": "custom",
                "periods": [
                    {"start": (today - timedelta(days=5)).isoformat(), "end": (today - timedelta(days=1)).isoformat()}
                ],
            },
            # Custom cycles take a list (the spec's table); the benchmark's customers enrol by events.
            "enrolment": {"method": "specific", "customers": ["c-listed"]},
        }
    )
    return body


async def run_on_broker(customers: int, bootstrap: str, folder: Path) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from milestream.kafka_client import client_options
    from milestream.topics import apply_topics, load_topics

    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"close-{tag}.",
        app_id=f"close-bench-{tag}",
        data_dir=str(folder / "worker"),
        web_port=free_port(),
        close_tick_interval_s=86400,
    )  # no tick of its own: the bench sends them
    topics = load_topics(settings)
    await apply_topics(settings, topics)
    now = datetime.now(timezone.utc)
    in_cycle = (now - timedelta(days=3)).isoformat()
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=20)
    await producer.start()
    await producer.send_and_wait(
        topics["definitions"].name, orjson.dumps(definition_in_the_past(now)), key=b"bench-close"
    )
    for n in range(customers):
        customer = f"c{n:08d}"
        await producer.send(
            topics["enrolments"].name,
            orjson.dumps(
                {
                    "type": "enrolment",
                    "event_id": f"e{n}",
                    "customer_id": customer,
                    "event_time": in_cycle,
                    "milestone_id": "bench-close",
                }
            ),
            key=customer.encode(),
        )
    await producer.flush()
    worker = worker_service("milestream worker", settings, folder / "worker.log")
    worker.start()
    offsets = Offsets(settings)
    await offsets.start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, worker.wait_healthy, "/healthz", 120.0)
        end = await offsets.end_offsets(topics["enrolments"].name)
        started = time.monotonic()
        while await offsets.lag(settings.app_id, end) > 0:  # every enrolment applied and committed
            worker.check_alive()
            if time.monotonic() - started > 1800:
                raise RuntimeError("enrolments not applied after 30 minutes")
            await asyncio.sleep(0.5)
        enrol_seconds = time.monotonic() - started
        consumer = AIOKafkaConsumer(
            topics["promotions"].name,
            **client_options(settings),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        tick = orjson.dumps({"type": "close_tick", "schema_version": 1, "now": datetime.now(timezone.utc).isoformat()})
        started = time.monotonic()
        for partition in range(topics["close-ticks"].partitions):
            await producer.send(topics["close-ticks"].name, tick, partition=partition)
        await producer.flush()
        closed: set[str] = set()
        while len(closed) < customers:
            worker.check_alive()
            if time.monotonic() - started > 1800:
                raise RuntimeError(f"only {len(closed)} of {customers} closes after 30 minutes")
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                closed.update(c for m in messages if not (c := orjson.loads(m.value)["customer_id"]).startswith("c-"))
        close_seconds = time.monotonic() - started
        await consumer.stop()
    finally:
        worker.stop()
        await offsets.close()
        await producer.stop()
    return {
        "customers": customers,
        "closes": len(closed),
        "enrol_seconds": enrol_seconds,
        "close_seconds": close_seconds,
        "close_rate": len(closed) / close_seconds,
        "partitions": topics["close-ticks"].partitions,
    }


def write(result: dict, broker: dict | None, revision: str) -> str:
    env = machine("none (in-process)")
    block = (
        f"{START_MARKER}\n"
        f"Run on **{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC** at commit `{revision}`, "
        f"{env['cpus']} CPUs ({env['cpu_model']}), Python {env['python']} (Milestream's "
        f"{env.get('milestream_build', 'pure Python')} build).\n\n"
        "| Enrolled customers | Cycle-close events | Close time | Closes/s | Ticks (batch) | "
        "Building the index (enrolments) | Peak RSS |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {result['customers']:,} | {result['closes']:,} | {result['close_seconds']:,.1f} s | "
        f"{result['close_rate']:,.0f} | {result['ticks']:,} ({result['batch']}) | "
        f"{result['index_seconds']:,.1f} s | {result['peak_rss_mib']:,.0f} MiB |\n"
    )
    if broker is not None:
        block += (
            "\nOn the worker with a local broker (one worker, "
            f"{broker['partitions']} partitions, one close tick per partition):\n\n"
            "| Enrolled customers | Cycle-close events | Close time | Closes/s | Applying the enrolments |\n"
            "|---:|---:|---:|---:|---:|\n"
            f"| {broker['customers']:,} | {broker['closes']:,} | {broker['close_seconds']:,.1f} s | "
            f"{broker['close_rate']:,.0f} | {broker['enrol_seconds']:,.1f} s |\n"
        )
    block += END_MARKER
    write_block(START_MARKER, END_MARKER, block, "Cycle close")
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.close", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=int(os.environ.get("BENCH_CLOSE_CUSTOMERS", 1_000_000)))
    parser.add_argument("--batch", type=int, default=Settings().close_batch_size)
    parser.add_argument(
        "--broker-customers",
        type=int,
        default=int(os.environ.get("BENCH_CLOSE_BROKER_CUSTOMERS", 50_000)),
        help="customers closed by the real worker on a local broker (0: skip)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    revision = git_revision()  # of the code that runs, even if the tree changes meanwhile
    folder = Path(tempfile.mkdtemp(prefix="milestream-close-bench-"))
    broker_result = None
    try:
        print(f"closing a cycle for {args.customers:,} enrolled customers (RocksDB state in {folder})", flush=True)
        result = run(args.customers, folder, args.batch)
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode(), flush=True)
        if args.broker_customers:
            broker = started_broker(folder / "kafka")
            try:
                print(
                    f"closing a cycle for {args.broker_customers:,} customers on the worker ({broker.bootstrap})",
                    flush=True,
                )
                broker_result = asyncio.run(run_on_broker(args.broker_customers, broker.bootstrap, folder))
            finally:
                broker.stop()
            print(orjson.dumps(broker_result, option=orjson.OPT_INDENT_2).decode())
    finally:
        Service.stop_all()
        shutil.rmtree(folder, ignore_errors=True)
    if result["closes"] != args.customers:
        print(f"expected {args.customers} closes, got {result['closes']}")
        return 1
    if not args.no_write:
        print(write(result, broker_result, revision))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
