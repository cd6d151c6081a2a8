"""``python -m bench.restore``: how long a fresh worker takes to restore N customers' state.

A worker assigned a partition restores its RocksDB store from the partition's
changelog before processing any of its records (app/milestream/runtime/partitions.py).
This fills a changelog topic of 8 partitions with N customers' state documents (the
state the bench milestone leaves after one transaction, about the size of a live
customer's) and measures, on the worker's own code:

1. a fresh worker (empty data folder) restoring every partition: time, records/s, and
   the process's peak RSS with N customers' state in RocksDB;
2. the same worker assigned the partitions again with its store current: only the
   changelog's tail (nothing) is read.

Twice: with the bench milestone as it is, and with its leaderboard on, where the
restore also derives each customer's leaderboard entry from the state document (the
entries are never in the changelog).

The restore block of BENCHMARKS.md is rewritten with the result.
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
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from milestream.kafka_client import client_options
from milestream.pipeline.driver import TopologyTestDriver
from milestream.runtime.partitions import PartitionStores
from milestream.settings import Settings
from milestream.state.keys import Customer
from milestream.topics import apply_topics, changelog_topics, load_topics

from . import workload
from .cluster import started_broker
from .report import git_revision, machine, write_block

START_MARKER = "<!-- restore:start -->"
END_MARKER = "<!-- restore:end -->"
PARTITIONS = 8


def sample_state(now: datetime, leaderboard: bool = False) -> bytes:
    """A customer's state after one bench transaction, as the worker stores it."""
    driver = TopologyTestDriver()
    definition = workload.definition(now, leaderboard=leaderboard)
    driver.pipe("definitions", workload.MILESTONE_ID, definition)
    ((key, value),) = workload.transactions(1, 1, now).records
    driver.pipe("transactions", key, value)
    state = driver.store.get(Customer("default", key.decode()).state_key)
    return orjson.dumps(state)


async def fill(settings: Settings, topic: str, customers: int, value: bytes) -> float:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    started = time.monotonic()
    try:
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        futures = []
        for n in range(customers):
            partition = n % PARTITIONS
            key = Customer("default", f"cust-{n:08d}").state_key.encode()
            if batches[partition].append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batches[partition], topic, partition=partition))
                batches[partition] = producer.create_batch()
                batches[partition].append(key=key, value=value, timestamp=None)
        for partition, batch in batches.items():
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def restore(settings: Settings, topic: str) -> float:
    stores = PartitionStores(settings, topic, PARTITIONS)
    started = time.monotonic()
    await stores.assign(range(PARTITIONS))
    elapsed = time.monotonic() - started
    stores.close()
    return elapsed


def run(customers: int, bootstrap: str, folder: Path, leaderboard: bool = False) -> dict:
    now = datetime.now(timezone.utc)
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        app_id=f"bench-restore-{tag}",
        topic_prefix=f"bench-restore-{tag}.",
        data_dir=str(folder / f"worker-{tag}"),
    )
    specs = load_topics(settings)
    (spec,) = changelog_topics(settings, specs).values()
    asyncio.run(apply_topics(settings, {spec.name: spec}))
    value = sample_state(now, leaderboard)
    fill_s = asyncio.run(fill(settings, spec.name, customers, value))
    print(f"changelog filled with {customers:,} states of {len(value)} bytes in {fill_s:.1f} s", flush=True)
    fresh_s = asyncio.run(restore(settings, spec.name))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    current_s = asyncio.run(restore(settings, spec.name))
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    return {
        "leaderboard": leaderboard,
        "customers": customers,
        "state_bytes": len(value),
        "fresh_s": round(fresh_s, 1),
        "fresh_per_s": round(customers / fresh_s),
        "current_s": round(current_s, 2),
        "peak_rss_mib": round(peak_mib),
    }


def write(results: list[dict], revision: str) -> str:
    m = machine("local broker")
    block = "\n".join(
        [
            START_MARKER,
            f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} at `{revision}` on {m['cpus']} CPUs, "
            f"{m['ram_gib']} GiB RAM (`python -m bench.restore`).",
            "",
            "| milestone | customers in state | state document | fresh worker: restore | records/s "
            "| store current: restore | peak RSS (process, so far) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {'leaderboard on: entries derived' if r['leaderboard'] else 'no leaderboard'} "
                f"| {r['customers']:,} | {r['state_bytes']} B | {r['fresh_s']} s | "
                f"{r['fresh_per_s']:,} | {r['current_s']} s | {r['peak_rss_mib']} MiB |"
                for r in results
            ),
            END_MARKER,
        ]
    )
    write_block(START_MARKER, END_MARKER, block, "Restoring state on a fresh worker")
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=int(os.environ.get("BENCH_RESTORE_CUSTOMERS", 1_000_000)))
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    revision = git_revision()
    folder = Path(tempfile.mkdtemp(prefix="milestream-restore-bench-"))
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = None
        if not bootstrap:
            broker = started_broker(folder / "kafka")
            bootstrap = broker.bootstrap
        try:
            results = [run(args.customers, bootstrap, folder, leaderboard) for leaderboard in (False, True)]
        finally:
            if broker is not None:
                broker.stop()
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode(), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not args.no_write:
        print(write(results, revision))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
