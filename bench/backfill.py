"""``python -m bench.backfill``: how fast ``milestream backfill`` computes a backdated milestone over the retained past.

1. Isolated topics (the input topics keep their records for ever: they are months old),
   N transactions of C customers with event times, and Kafka timestamps, spread from the
   first day of the month six months back until now; the benchmark milestone (monthly
   gross spend, bench/workload.py) starts that same month.
2. One ``milestream worker`` process works through them live, as ``bench.run`` measures
   it: the live rate, the baseline.
3. A second milestone, the same but published only now (backdated six months), then
   ``milestream backfill --milestone`` as a separate process: the copy phase from its
   status records on the ``backfills`` topic, and the whole run until ``done`` (the
   command returns once the worker has applied the end markers). Meanwhile the
   worker's count of applied copies is sampled from its /metrics page.
4. A second deployment (its own app id and state; the copies deleted from the backfill
   topic) works through the same transactions live with both milestones defined from the
   start: the rate live processing would have had if the backdated milestone had existed
   all along, which is what the backfill reproduces.

The workers' close ticks are off, so the past cycles' closes (``bench.close`` measures
those) run in none of the phases. The backfill block of BENCHMARKS.md is
rewritten with the result (not with ``--quick`` unless ``--write``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import resource
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from milestream.kafka_client import client_options
from milestream.schemas.backfill import BackfillStatus
from milestream.settings import Settings

from . import report, workload
from .cluster import bench_connection, interrupt_on_sigterm
from .procs import BenchError, CpuMeter, Service, free_port, settings_env
from .run import BENCH_DIR, POLL_S, Bench, http_json, log, wait_for

START_MARKER = "<!-- backfill:start -->"
END_MARKER = "<!-- backfill:end -->"
BACKFILL_ID = "bench-backdated-spend"
MONTHS_BACK = 6
EXTRAPOLATE_TO = 10_000_000  # six months of 100,000 customers at about 17 transactions a month each
# Sizes of a full run (environment variable, default) and of --quick. A full run takes about five
# minutes on 2 cores; a million records (100,000 customers) would take over a quarter of an hour.
SIZES = {
    "events": ("BENCH_BACKFILL_EVENTS", 300_000, 100_000),
    "customers": ("BENCH_BACKFILL_CUSTOMERS", 30_000, 10_000),
}


def months_back(now: datetime, months: int) -> datetime:
    """The first instant of the calendar month ``months`` before this one (UTC)."""
    first = workload.month_start(now)
    index = first.year * 12 + first.month - 1 - months
    return first.replace(year=index // 12, month=index % 12 + 1)


class BackfillBench(Bench):
    stamp_event_times = True

    def __init__(self, args: argparse.Namespace, connection: Settings, run_dir: Path, broker_pid: int | None) -> None:
        now = datetime.now(timezone.utc)
        # No close ticks of the worker's own: the past cycles would close in the middle of both measurements.
        super().__init__(
            args, connection, run_dir, broker_pid, start=months_back(now, MONTHS_BACK), close_tick_interval_s=86400
        )
        # Months-old records outlive the run only without time-based retention (30 days on the inputs).
        self.topics = {
            name: dataclasses.replace(spec, config={**spec.config, "retention.ms": "-1"})
            if "retention.ms" in spec.config
            else spec
            for name, spec in self.topics.items()
        }
        self.backfill_topic = self.topics["backfill"].name

    async def backfill(self, load: workload.Workload) -> None:
        worker = self.worker
        if worker is None:
            raise BenchError("the backfill phase needs the live phase's worker")
        producer = AIOKafkaProducer(**client_options(self.settings), acks="all")
        await producer.start()
        try:
            # The same milestone under another id and name (names are unique), published only now.
            body = workload.definition(self.now, self.start, milestone_id=BACKFILL_ID)
            body["name"] += " (backdated)"
            await producer.send_and_wait(self.topics["definitions"].name, orjson.dumps(body), key=BACKFILL_ID.encode())
        finally:
            await producer.stop()

        async def knows_definition() -> bool:
            return BACKFILL_ID in (await http_json(worker, "/definitions") or {})

        await wait_for("worker loading the backdated milestone", knows_definition, timeout=60, service=worker)
        outputs_before = await self.offsets.total(self.promotions)
        log(f"backdated milestone {BACKFILL_ID} loaded (from {self.start:%Y-%m-%d}); milestream backfill ...")

        seen: dict[str, Any] = {"first": None, "last": None, "count": 0, "outcomes": {}}
        events = len(load)

        async def sample() -> None:
            outcomes = await self.worker_outcomes(self.backfill_topic) or {}
            count = outcomes.get("backfilled", 0) + outcomes.get("backfill_skipped", 0)
            now = time.time()
            if count and seen["first"] is None:
                seen["first"] = now
            if count >= events and seen["last"] is None:
                seen["last"] = now
            seen["count"], seen["outcomes"] = count, outcomes

        command_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command is the only child reaped meanwhile
        meter = CpuMeter({"worker": worker.process.pid if worker.process else None, "broker": self.broker_pid})
        stderr_path = self.run_dir / "backfill-command.log"
        started = time.time()
        with open(stderr_path, "wb") as stderr:
            command = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "milestream.cli",
                "backfill",
                "--milestone",
                BACKFILL_ID,
                env=settings_env(self.settings),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
            last_log = time.monotonic()
            while command.returncode is None:
                worker.check_alive()
                await sample()
                if time.monotonic() - last_log >= 10:
                    last_log = time.monotonic()
                    log(f"backfill: the worker has applied {seen['count']:,}/{events:,} copies")
                try:
                    await asyncio.wait_for(command.wait(), POLL_S)
                except TimeoutError:
                    pass
        finished = time.time()
        cpu = meter.read()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        command_cpu_s = after.ru_utime + after.ru_stime - command_cpu.ru_utime - command_cpu.ru_stime
        if command.returncode != 0:
            raise worker.failure(
                f"milestream backfill exited with {command.returncode}:\n{stderr_path.read_text(errors='replace')}"
            )
        await sample()
        phases = await self.status_times()

        async def outputs_settled() -> bool:
            return await self.offsets.total(self.promotions) - outputs_before >= load.expected_outputs

        try:
            await wait_for("the backfill's milestone events", outputs_settled, timeout=30, service=worker)
        except BenchError as exc:
            log(f"WARNING: {str(exc).splitlines()[0]}")
        command_s = finished - started
        copy_s = phases["applying"] - phases["copying"]
        applying_s = (seen["last"] or finished) - (seen["first"] or started)
        self.results["backfill"] = {
            "records": events,
            "command_seconds": command_s,
            "start_markers_seconds": phases["copying"] - phases["started"],
            "copy_seconds": copy_s,
            "end_markers_seconds": phases["done"] - phases["applying"],
            "copy_rate": events / copy_s,
            "total_rate": events / command_s,
            "worker_seconds": applying_s,
            "worker_rate": events / applying_s,
            "outcomes": seen["outcomes"],
            "outputs": await self.offsets.total(self.promotions) - outputs_before,
            "expected_outputs": load.expected_outputs,
            "worker_cpu_us": 1e6 * cpu["worker"] / events,
            "command_cpu_us": 1e6 * command_cpu_s / events,
            "cores": {
                "worker": cpu["worker"] / command_s,
                "command": command_cpu_s / command_s,
                "broker": cpu.get("broker", 0.0) / command_s,
                "others": max(0.0, cpu["others"] - command_cpu_s) / command_s,
            },
        }
        b = self.results["backfill"]
        log(
            f"backfill: {command_s:.1f} s in all ({b['total_rate']:,.0f} records/s), copy {copy_s:.1f} s "
            f"({b['copy_rate']:,.0f}/s), the worker's copies {applying_s:.1f} s ({b['worker_rate']:,.0f}/s); "
            f"outcomes {b['outcomes']}, {b['outputs']:,} outputs (expected {b['expected_outputs']:,})"
        )
        if b["outcomes"].get("backfilled") != events or b["outputs"] != load.expected_outputs:
            log("WARNING: the backfill did not apply every record, or its outputs differ from the expected")

    async def live_with_both(self, load: workload.Workload) -> None:
        """The same transactions worked through live by a second deployment (an app id and state of its
        own) with both milestones defined from the start: the rate of live processing had the backdated
        milestone existed all along, which is what the backfill reproduces."""
        if self.worker is not None:
            self.worker.stop()
        await self.clear_backfill_topic()  # the copies are the first deployment's business
        both = self.settings.model_copy(
            update={
                "app_id": f"{self.settings.app_id}-both",
                "data_dir": str(self.run_dir / "milestream-data-both"),
                "web_port": free_port(),
            }
        )
        log("live again, both milestones defined from the start (a second deployment) ...")
        await self.milestream(load, both, result_key="live_both", milestones=2)

    async def clear_backfill_topic(self) -> None:
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        consumer = AIOKafkaConsumer(**client_options(self.settings), group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(self.backfill_topic, p) for p in range(self.topics["backfill"].partitions)]
            ends = await consumer.end_offsets(tps)
            await admin.delete_records({tp: RecordsToDelete(end) for tp, end in ends.items() if end})
        finally:
            await consumer.stop()
            await admin.close()

    async def status_times(self) -> dict[str, float]:
        """When the run started, began copying, sent its end markers and was done: its status records'
        times (epoch s), read back from the ``backfills`` topic."""
        tp = TopicPartition(self.topics["backfills"].name, 0)
        consumer = AIOKafkaConsumer(**client_options(self.settings), group_id=None, enable_auto_commit=False)
        await consumer.start()
        times: dict[str, float] = {}
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for messages in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    for message in messages:
                        status = BackfillStatus.model_validate_json(message.value or b"null")
                        times.setdefault("started", status.started_at.timestamp())
                        times.setdefault(status.state, status.updated_at.timestamp())
                        if status.finished_at is not None:
                            times["done"] = status.finished_at.timestamp()
        finally:
            await consumer.stop()
        missing = {"started", "copying", "applying", "done"} - times.keys()
        if missing:
            raise BenchError(f"the backfill's status records lack {sorted(missing)}")
        return times


async def phases(args: argparse.Namespace, connection: Settings, run_dir: Path, broker_pid: int | None) -> Bench:
    bench = BackfillBench(args, connection, run_dir, broker_pid)
    try:
        load = await bench.setup()
        await bench.produce(load)
        await bench.milestream(load)
        await bench.backfill(load)
        await bench.live_with_both(load)
    finally:
        await bench.cleanup(external=broker_pid is None)
    return bench


# ------------------------------------------------------------------ report


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The figures of the block: the live and backfill rates, their ratios, the extrapolation."""
    live, both, b = results["milestream"], results["live_both"], results["backfill"]
    return {
        "live_rate": live["processing_rate"],
        "both_rate": both["processing_rate"],
        "live_cpu_us": _cpu_us(live),
        "both_cpu_us": _cpu_us(both),
        "ratio": b["total_rate"] / live["processing_rate"],
        "ratio_both": b["total_rate"] / both["processing_rate"],
        "extrapolated_s": EXTRAPOLATE_TO / b["total_rate"],
        "extrapolated_live_s": EXTRAPOLATE_TO / live["processing_rate"],
        "extrapolated_both_s": EXTRAPOLATE_TO / both["processing_rate"],
    }


def _cpu_us(result: dict[str, Any]) -> float | None:
    return 1e6 / result["events_per_cpu_s"] if result.get("events_per_cpu_s") else None


def _row(name: str, records: int, seconds: float, rate: float, fig: dict[str, Any], cpu: float | None) -> str:
    ratios = f"{rate / fig['live_rate']:.2f} | {rate / fig['both_rate']:.2f}"
    return (
        f"| {name} | {records:,} | {seconds:,.1f} | {rate:,.0f} | {ratios} | {'—' if cpu is None else f'{cpu:,.0f}'} |"
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:,.0f} min" if seconds >= 600 else f"{seconds / 60:,.1f} min"


def block(results: dict[str, Any]) -> str:
    s, m, b = results["settings"], results["machine"], results["backfill"]
    live, both = results["milestream"], results["live_both"]
    fig = summary(results)
    cores = b["cores"]
    return "\n".join(
        [
            START_MARKER,
            f"Run on **{results['date']}** at commit `{results['revision']}`, {m['cpus']} CPUs ({m['cpu_model']}), "
            f"{m['ram_gib']} GiB RAM, Python {m['python']} (Milestream's {m.get('milestream_build', 'pure Python')} "
            f"build), Kafka: {m['kafka']}; the whole run took "
            f"{results['wall_clock_seconds']:.0f} s.",
            "",
            f"**{s['events']:,} transactions of {s['customers']:,} customers** with event times from {s['from']} "
            "until the run "
            f"({s['partitions']} partitions, one worker), Kafka timestamps = event times; the milestone: monthly "
            "gross spend 5,000 (sub-targets 25/50/75 %), calendar cycles from that month.",
            "",
            "| Phase | Records | Seconds | Records/s | × live, one milestone | × live, both | Worker CPU µs/record |",
            "|---|---:|---:|---:|---:|---:|---:|",
            _row(
                "Live: one worker, the milestone defined from the start (the deployment before the backdated one)",
                live["events"],
                live["processing_seconds"],
                live["processing_rate"],
                fig,
                fig["live_cpu_us"],
            ),
            _row(
                "Live: a second deployment with both milestones defined from the start (as if the backdated one "
                "had existed all along)",
                both["events"],
                both["processing_seconds"],
                both["processing_rate"],
                fig,
                fig["both_cpu_us"],
            ),
            _row(
                "Backfill, copy phase (`copying` → `applying`)",
                b["records"],
                b["copy_seconds"],
                b["copy_rate"],
                fig,
                None,
            ),
            _row(
                "Backfill, the worker applying the copies (first → last)",
                b["records"],
                b["worker_seconds"],
                b["worker_rate"],
                fig,
                b["worker_cpu_us"],
            ),
            _row(
                "**Backfill, total** (command start → `done`)",
                b["records"],
                b["command_seconds"],
                b["total_rate"],
                fig,
                None,
            ),
            "",
            f"Within the command's {b['command_seconds']:,.1f} s: {b['start_markers_seconds']:.1f} s until the "
            f"worker took up the start markers, {b['copy_seconds']:,.1f} s copying, {b['end_markers_seconds']:.1f} s "
            f"from the end markers to `done`. The command used {b['command_cpu_us']:,.0f} µs of CPU per record; "
            f"cores during the backfill: worker {cores['worker']:.2f}, command {cores['command']:.2f}, "
            + (f"broker {cores['broker']:.2f}, others" if s["own_broker"] else "others (the broker included)")
            + f" {cores['others']:.2f}. Worker outcomes on the backfill topic: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(b["outcomes"].items()))
            + f"; {b['outputs']:,} milestone events (expected {b['expected_outputs']:,}).",
            "",
            f"**Extrapolation** (linear, from the rates measured here; not measured): "
            f"{EXTRAPOLATE_TO:,} records (six months of 100,000 customers) would take about "
            f"{_minutes(fig['extrapolated_s'])} to backfill on one worker of this machine, against "
            f"{_minutes(fig['extrapolated_both_s'])} to process live with both milestones and "
            f"{_minutes(fig['extrapolated_live_s'])} with the one.",
            END_MARKER,
        ]
    )


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__.split("\n\n")[0])
    for name, (env, full, quick) in SIZES.items():
        p.add_argument(f"--{name}", type=int, help=f"(env {env}, default {full:,}, --quick {quick:,})")
    p.add_argument("--quick", action="store_true", help="small sizes, and --no-write unless --write is given")
    writing = p.add_mutually_exclusive_group()
    writing.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    writing.add_argument("--write", action="store_true", help="update BENCHMARKS.md even with --quick")
    args = p.parse_args(argv)
    for name, (env, full, quick) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else int(os.environ.get(env, full)))
    args.no_write = args.no_write or (args.quick and not args.write)
    args.commit_interval = 0.5  # run.Bench's settings; the worker itself commits every batch
    args.leaderboard = False  # run.Bench's milestone, without the leaderboard index
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    wall_started = time.monotonic()
    revision = report.git_revision()  # of the code that runs, even if the tree changes meanwhile
    run_dir = BENCH_DIR / f"backfill-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    broker = None
    try:
        settings, broker, kafka_label = bench_connection(BENCH_DIR / "kafka")
        log(f"backfill bench: {args.events:,} transactions of {args.customers:,} customers")
        bench = asyncio.run(phases(args, settings, run_dir, broker.pid if broker else None))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 1
    finally:
        Service.stop_all()
        if broker is not None:
            broker.stop()
            shutil.rmtree(broker.run_dir / "data", ignore_errors=True)
        shutil.rmtree(run_dir / "milestream-data", ignore_errors=True)
    results = {
        **bench.results,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": revision,
        "machine": report.machine(kafka_label),
        "settings": {
            "events": args.events,
            "customers": args.customers,
            "from": f"{bench.start:%Y-%m-%d}",
            "partitions": bench.topics["transactions"].partitions,
            "own_broker": broker is not None,
        },
        "wall_clock_seconds": time.monotonic() - wall_started,
    }
    results["summary"] = summary(results)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = block(results)
    print(text)
    print(f"\nlogs and results.json in {run_dir}")
    if not args.no_write:
        report.write_block(START_MARKER, END_MARKER, text, "Backfilling a backdated milestone")
        print(f"updated {report.BENCHMARKS_MD.relative_to(report.REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
