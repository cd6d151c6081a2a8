"""``python -m bench.close``: how long closing a cycle takes for N enrolled customers (default 1M).

The topology runs in-process on the RocksDB state backend (the same rocksdict
store the worker's tables use), on one partition, with the worker's code path:

1. a monthly milestone with enrolment "none" and one enrolment event per
   customer (every tenth also buys something): each opens the customer's cycle
   and adds it to the close index;
2. close ticks at the cycle's end, each closing ``MILESTREAM_CLOSE_BATCH_SIZE``
   customers and asking for the next, until every customer has its close.

It measures phase 2 (the close) and reports phase 1 (building the index) apart,
with the process's peak memory, then rewrites the close block of BENCHMARKS.md.
There is no broker here: this is the cost of the close itself, not of Kafka.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from milestream.pipeline.driver import TopologyTestDriver
from milestream.settings import Settings
from milestream.state.rocksdb import RocksDBStore

from .report import BENCHMARKS_MD, git_revision, machine

START_MARKER = "<!-- close:start -->"
END_MARKER = "<!-- close:end -->"
CYCLE_START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def definition() -> dict:
    return {
        "type": "milestone_definition", "milestone_id": "bench-close", "name": "Benchmark close",
        "starts_at": CYCLE_START.isoformat(), "ends_at": (CYCLE_START + timedelta(days=365)).isoformat(),
        "timezone": "UTC", "enrolment": {"method": "none"},
        "cycles": {"kind": "calendar", "frequency": "monthly", "start_date": "2026-01-01", "count": 12},
        "group": {"targets": [{"target_id": "spend", "name": "Monthly spend", "activity": "transaction",
                               "level": "bill", "kpi": "gross_amount", "value": "5000"}]},
    }


def run(customers: int, folder: Path, batch: int) -> dict:
    store = RocksDBStore(folder / "state")
    driver = TopologyTestDriver(Settings(close_batch_size=batch), store=store)
    driver.pipe("definitions", "bench-close", definition())
    during = CYCLE_START + timedelta(days=10)
    started = time.perf_counter()
    for n in range(customers):
        customer = f"c{n:08d}"
        driver.pipe("enrolments", customer, orjson.dumps({
            "type": "enrolment", "event_id": f"e{n}", "customer_id": customer,
            "event_time": during.isoformat(), "milestone_id": "bench-close"}), timestamp=during)
        if n % 10 == 0:
            driver.pipe("transactions", customer, orjson.dumps({
                "type": "transaction", "event_id": f"t{n}", "customer_id": customer, "bill_id": f"b{n}",
                "event_time": during.isoformat(), "gross_amount": "1200"}), timestamp=during)
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
        "customers": customers, "closes": closes, "ticks": ticks, "batch": batch,
        "index_seconds": index_seconds, "close_seconds": close_seconds,
        "close_rate": closes / close_seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def write(result: dict, revision: str) -> str:
    env = machine("none (in-process)")
    block = (
        f"{START_MARKER}\n"
        f"Run on **{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC** at commit `{revision}`, "
        f"{env['cpus']} CPUs ({env['cpu_model']}), Python {env['python']}.\n\n"
        "| Enrolled customers | Cycle-close events | Close time | Closes/s | Ticks (batch) | "
        "Building the index (enrolments) | Peak RSS |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {result['customers']:,} | {result['closes']:,} | {result['close_seconds']:,.1f} s | "
        f"{result['close_rate']:,.0f} | {result['ticks']:,} ({result['batch']}) | "
        f"{result['index_seconds']:,.1f} s | {result['peak_rss_mib']:,.0f} MiB |\n"
        f"{END_MARKER}"
    )
    text = BENCHMARKS_MD.read_text()
    if START_MARKER in text:
        head, rest = text.split(START_MARKER, 1)
        text = head + block + rest.split(END_MARKER, 1)[1]
    else:
        text += "\n## Cycle close\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.close", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=int(os.environ.get("BENCH_CLOSE_CUSTOMERS", 1_000_000)))
    parser.add_argument("--batch", type=int, default=Settings().close_batch_size)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    revision = git_revision()  # of the code that runs, even if the tree changes meanwhile
    folder = Path(tempfile.mkdtemp(prefix="milestream-close-bench-"))
    try:
        print(f"closing a cycle for {args.customers:,} enrolled customers (RocksDB state in {folder})", flush=True)
        result = run(args.customers, folder, args.batch)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if result["closes"] != args.customers:
        print(f"expected {args.customers} closes, got {result['closes']}")
        return 1
    if not args.no_write:
        print(write(result, revision))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
