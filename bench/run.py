"""``make bench``: Milestream's throughput and latency on a real Kafka broker.

Phases (see BENCHMARKS.md for what each measures and why):

1. a broker (a fresh local one unless ``KAFKA_BOOTSTRAP_SERVERS`` is set),
   isolated topics, the benchmark milestone on the definitions topic;
2. N generated transactions produced into the transactions topic;
3. four consumers over that same topic, one after the other: a raw aiokafka
   consumer, a naive Faust agent, a Quix Streams application, the Milestream worker;
4. event → output latency of the running worker at a paced rate;
5. the topology and engine in-process (no broker), with a profile.

Then the tables on stdout, ending with a one-row summary to compare across
commits, ``.local/bench/<run>/results.json``, and the results block of
BENCHMARKS.md rewritten (not with ``--quick`` or ``--no-write``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from milestream.kafka_client import client_options, security_values
from milestream.settings import Settings
from milestream.topics import apply_topics, load_topics

from . import inprocess, report, workload
from .cluster import Offsets, interrupt_on_sigterm, local_kafka, started_broker
from .procs import BenchError, CpuMeter, Service, free_port, settings_env, worker_service

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / ".local" / "bench"
# The interpreter of the Quix Streams app: quixstreams pins an older pydantic, so `make bench`
# installs it in a virtualenv of its own.
QUIX_PYTHON = "MILESTREAM_QUIX_PYTHON"
WORKERS = 2  # the "workers" phase: one deployment of this many workers (this host has 2 cores)
PHASES = ("raw", "naive", "quix", "milestream", "workers", "latency", "inprocess")
POLL_S = 0.25  # how often the consumers' progress and the group lag are sampled
STALL_S = 90.0  # a phase fails when nothing moves for this long
LATENCY_RATE_CAP = 5000.0
# The latency phase's rate is half the worker's measured capacity on output-producing records: measured
# over enough of them (seconds, not a fraction of one) and read often, so that the estimate is stable.
CAPACITY_EVENTS_MIN, CAPACITY_EVENTS_MAX = 5_000, 20_000
CAPACITY_POLL_S = 0.05
LATENCY_WINDOW_S = 5.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# Sizes of a full run (environment variable, default) and of ``--quick``, by option.
SIZES: dict[str, tuple[str, type, float, float]] = {
    "events": ("BENCH_EVENTS", int, 200_000, 50_000),
    "customers": ("BENCH_CUSTOMERS", int, 10_000, 2_500),  # the same 20 bills per customer on average
    "latency_events": ("BENCH_LATENCY_EVENTS", int, 20_000, 5_000),
    "latency_seconds": ("BENCH_LATENCY_SECONDS", float, 60, 20),
    "inprocess_events": ("BENCH_INPROCESS_EVENTS", int, 100_000, 20_000),
    "profile_events": ("BENCH_PROFILE_EVENTS", int, 20_000, 0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])

    def size(option: str, help: str) -> None:
        env, kind, full, quick = SIZES[option.lstrip("-").replace("-", "_")]
        p.add_argument(option, type=kind, help=f"{help} (env {env}, default {full:g}, --quick {quick:g})")

    size("--events", "transactions pre-loaded and consumed")
    size("--customers", "distinct customers")
    size("--latency-events", "transactions of the latency phase")
    p.add_argument(
        "--latency-rate",
        type=float,
        default=float(os.environ.get("BENCH_LATENCY_RATE", 0)),
        help="events/s of the latency phase (default: half the worker's measured rate on such "
        f"events, at most {LATENCY_RATE_CAP:.0f})",
    )
    size("--latency-seconds", "at most this long at the paced rate: fewer events if needed")
    size("--inprocess-events", "transactions of the in-process phase")
    size("--profile-events", "transactions profiled in-process (0: no profile)")
    p.add_argument(
        "--commit-interval",
        type=float,
        default=0.5,
        help="commit interval of the naive Faust agent and the Quix app, s (default 0.5; "
        "the worker checkpoints every MILESTREAM_CHECKPOINT_INTERVAL_MS)",
    )
    p.add_argument(
        "--leaderboard",
        action="store_true",
        help="the benchmark milestone with its leaderboard on (what the index costs the worker: compare "
        "with a run without); implies --no-write",
    )
    p.add_argument("--skip", default="", help=f"comma-separated phases to skip: {', '.join(PHASES)}")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for iterating (the --quick values above; explicit options win) and --no-write "
        "unless --write is given",
    )
    writing = p.add_mutually_exclusive_group()
    writing.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    writing.add_argument("--write", action="store_true", help="update BENCHMARKS.md even with --quick")
    args = p.parse_args(argv)
    for name, (env, kind, full, quick) in SIZES.items():
        if getattr(args, name) is None:  # not given: --quick's size, else the environment's, else the default
            setattr(args, name, kind(quick if args.quick else os.environ.get(env, full)))
    args.no_write = args.no_write or (args.quick and not args.write) or args.leaderboard
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(PHASES)
    if unknown:
        p.error(f"unknown phases to skip: {', '.join(sorted(unknown))}")
    if args.events < 1 or args.customers < 1:
        p.error("--events and --customers must be positive")
    if "quix" not in args.skip and not os.environ.get(QUIX_PYTHON) and importlib.util.find_spec("quixstreams") is None:
        p.error(
            f"the quix phase needs quixstreams: {QUIX_PYTHON}=<a python with `pip install -e '.[bench]'`> "
            "(make bench makes one in .venv-bench), or --skip quix"
        )
    return args


# ------------------------------------------------------------------- helpers


async def wait_for(
    what: str,
    probe: Callable[[], Any],
    *,
    progress: Callable[[], Any] | None = None,
    timeout: float,
    interval: float = POLL_S,
    service: Service | None = None,
) -> float:
    """Poll the async ``probe`` until it is true; returns the wall-clock time it was seen true.

    Fails after ``timeout`` s, or after STALL_S s in which ``progress`` (if given) did not change.
    """
    started = time.monotonic()
    last_progress, last_change = None, started
    while True:
        if service is not None:
            service.check_alive()
        if await probe():
            return time.time()
        now = time.monotonic()
        if progress is not None:
            current = await progress()
            if current != last_progress:
                last_progress, last_change = current, now
            elif now - last_change > STALL_S:
                raise _failure(service, f"{what}: no progress for {STALL_S:.0f} s (stuck at {current})")
        if now - started > timeout:
            raise _failure(service, f"{what}: not done after {timeout:.0f} s")
        await asyncio.sleep(interval)


def _failure(service: Service | None, message: str) -> BenchError:
    return service.failure(message) if service is not None else BenchError(message)


async def http_json(service: Service, path: str) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, service.get_json, path)


async def http_text(service: Service, path: str) -> str | None:
    answer = await asyncio.get_running_loop().run_in_executor(None, service.get, path, 5.0)
    return answer[1].decode() if answer is not None and answer[0] == 200 else None


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1], "mean": statistics.fmean(ordered)}


def rates(
    events: int, first: float, done: float, started: float, committed: float | None, cpu: dict[str, float]
) -> dict[str, Any]:
    processing = max(done - first, 1e-9)
    result = {"events": events, "processing_seconds": processing, "processing_rate": events / processing}
    if committed is not None:
        result["e2e_seconds"] = committed - started
        result["e2e_rate"] = events / (committed - started)
    result["cpu"] = cpu
    result["events_per_cpu_s"] = events / cpu["consumer"] if cpu.get("consumer") else None
    result["cores"] = {name: used / processing for name, used in cpu.items() if name not in ("wall",)}
    return result


# --------------------------------------------------------------------- phases


class Bench:
    # Kafka timestamps of the pre-loaded records: their event times (else the producer's clock).
    stamp_event_times = False

    def __init__(
        self,
        args: argparse.Namespace,
        connection: Settings,
        run_dir: Path,
        broker_pid: int | None,
        start: datetime | None = None,
        **overrides: Any,
    ) -> None:
        self.args = args
        self.broker_pid = broker_pid
        self.run_dir = run_dir
        self.tag = uuid.uuid4().hex[:8]
        self.now = datetime.now(timezone.utc)
        self.start = start or workload.month_start(self.now)  # the milestone's first cycle and the first event
        self.settings = Settings(
            **security_values(connection),
            kafka_bootstrap_servers=connection.kafka_bootstrap_servers,
            topic_prefix=f"bench-{self.tag}.",
            app_id=f"milestream-bench-{self.tag}",
            data_dir=str(run_dir / "milestream-data"),
            web_port=free_port(),
            commit_interval_s=args.commit_interval,
            **overrides,
        )
        self.topics = load_topics(self.settings)
        self.transactions = self.topics["transactions"].name
        self.promotions = self.topics["promotions"].name
        self.naive_app_id = f"naive-faust-bench-{self.tag}"
        self.quix_group = f"quix-bench-{self.tag}"
        self.quix_outputs = f"{self.settings.topic_prefix}quix-milestones"
        self.offsets = Offsets(self.settings)
        self.results: dict[str, Any] = {}
        self.end: dict[TopicPartition, int] = {}
        self.worker: Service | None = None

    # ------------------------------------------------------------- set-up
    async def setup(self) -> workload.Workload:
        await self.offsets.start()
        for line in await apply_topics(self.settings, self.topics):
            if not line.startswith("created"):
                raise BenchError(f"topic prefix {self.settings.topic_prefix} is not fresh: {line}")
        log(
            f"topics created with prefix {self.settings.topic_prefix} "
            f"({self.topics['transactions'].partitions} partitions)"
        )
        producer = AIOKafkaProducer(**client_options(self.settings), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                self.topics["definitions"].name,
                orjson.dumps(workload.definition(self.now, self.start, leaderboard=self.args.leaderboard)),
                key=workload.MILESTONE_ID.encode(),
            )
        finally:
            await producer.stop()
        started = time.perf_counter()
        load = workload.transactions(self.args.events, self.args.customers, self.now, start=self.start)
        log(
            f"generated {len(load):,} transactions of {load.customers:,} customers in "
            f"{time.perf_counter() - started:.1f} s; the milestone should yield {load.expected_outputs:,} outputs"
        )
        return load

    async def produce_fast(self, records: list[tuple[bytes, bytes]], times_ms: list[int] | None = None) -> float:
        """Produce records to the transactions topic as fast as one producer can, with the Kafka timestamps
        ``times_ms`` if given; returns the seconds taken."""
        producer = AIOKafkaProducer(
            **client_options(self.settings),
            acks=1,
            linger_ms=20,
            max_batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
        )
        await producer.start()
        try:
            started = time.perf_counter()
            pending = []
            for i, (key, value) in enumerate(records):
                stamp = times_ms[i] if times_ms else None
                pending.append(await producer.send(self.transactions, value, key=key, timestamp_ms=stamp))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            return time.perf_counter() - started
        finally:
            await producer.stop()

    async def produce(self, load: workload.Workload) -> None:
        seconds = await self.produce_fast(load.records, load.times_ms if self.stamp_event_times else None)
        self.end = await self.offsets.end_offsets(self.transactions)
        on_topic = sum(self.end.values())
        if on_topic != len(load):
            raise BenchError(f"{on_topic} records on {self.transactions}, expected {len(load)}")
        size = sum(len(v) for _, v in load.records)
        self.results["produce"] = {
            "events": len(load),
            "seconds": seconds,
            "rate": len(load) / seconds,
            "mb_per_s": size / seconds / 1e6,
        }
        log(f"produced {len(load):,} records ({size / 1e6:.1f} MB) in {seconds:.1f} s: {len(load) / seconds:,.0f}/s")

    async def raw_consumer(self, events: int) -> None:
        consumer = AIOKafkaConsumer(
            self.transactions,
            **client_options(self.settings),
            group_id=f"raw-bench-{self.tag}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        started = time.time()
        await consumer.start()
        count, first, meter = 0, None, None
        deadline = time.monotonic() + 120
        try:
            while count < events:
                if time.monotonic() > deadline:
                    raise BenchError(f"raw consumer: {count:,}/{events:,} records after 120 s")
                polled = time.time()
                batches = await consumer.getmany(timeout_ms=1000, max_records=100_000)
                if first is None and any(batches.values()):
                    first = polled  # the start of the first fetch that returned records
                    meter = CpuMeter({"consumer": os.getpid(), "broker": self.broker_pid})
                count += sum(len(messages) for messages in batches.values())
            done = time.time()
        finally:
            await consumer.stop()
        assert first is not None and meter is not None
        self.results["raw"] = rates(count, first, done, started, done, meter.read())
        log(
            f"raw aiokafka: {count:,} records, {self.results['raw']['processing_rate']:,.0f}/s "
            f"({self.results['raw']['e2e_rate']:,.0f}/s including the group join)"
        )

    async def _follow(
        self,
        name: str,
        service: Service | list[Service],
        group: str,
        events: int,
        count: Callable[[], Any],
        started: float,
        healthy: float,
    ) -> dict[str, Any]:
        """Sample a consumer's processed count (of all its processes, for a list) until all ``events``
        are processed and committed; "consumer" CPU is theirs together."""
        services = service if isinstance(service, list) else [service]
        seen: dict[str, Any] = {
            "count": 0,
            "first": None,
            "done": None,
            "committed": None,
            "cpu": None,
            "last_log": time.monotonic(),
        }
        consumers = {
            "consumer" if len(services) == 1 else f"consumer {n + 1}": one.process.pid if one.process else None
            for n, one in enumerate(services)
        }
        meter = CpuMeter({**consumers, "broker": self.broker_pid, "bench": os.getpid()})

        async def sample() -> bool:
            for other in services[1:]:  # wait_for watches the first
                other.check_alive()
            now = time.time()
            value = await count()
            if value is not None:
                seen["count"] = value
                if value > 0 and seen["first"] is None:
                    seen["first"] = now
                    meter.restart()  # CPU is counted from the first record processed
                if value >= events and seen["done"] is None:
                    seen["done"] = now
                    seen["cpu"] = meter.read()
                    seen["cpu"]["consumer"] = sum(seen["cpu"].get(name, 0.0) for name in consumers)
            if seen["done"] is not None and seen["committed"] is None:
                if await self.offsets.lag(group, self.end) == 0:
                    seen["committed"] = time.time()
            if time.monotonic() - seen["last_log"] >= 10:
                seen["last_log"] = time.monotonic()
                elapsed = now - seen["first"] if seen["first"] else 0
                log(
                    f"{name}: {seen['count']:,}/{events:,} processed"
                    + (f" ({seen['count'] / elapsed:,.0f}/s)" if elapsed > 0 else "")
                )
            return seen["done"] is not None and seen["committed"] is not None

        async def progress() -> tuple[Any, ...]:
            return seen["count"], seen["committed"]

        timeout = 120 + events / 200
        await wait_for(
            f"{name} processing {events:,} records", sample, progress=progress, timeout=timeout, service=services[0]
        )
        result = rates(events, seen["first"], seen["done"], started, seen["committed"], seen["cpu"])
        result["startup_seconds"] = seen["first"] - started
        result["healthy_after_seconds"] = healthy - started
        result["processed_to_committed_seconds"] = seen["committed"] - seen["done"]
        return result

    async def naive_faust(self, events: int) -> None:
        config: dict[str, Any] = {
            "app_id": self.naive_app_id,
            "topic": self.transactions,
            "data_dir": str(self.run_dir / "naive-data"),
            "web_port": free_port(),
            "partitions": self.topics["transactions"].partitions,
            "commit_interval": self.settings.commit_interval_s,
            "max_poll_records": self.settings.max_poll_records,
            "checkpoint_interval_ms": self.settings.checkpoint_interval_ms,
            "stream_buffer_maxsize": 8192,  # Faust's default
        }
        env = settings_env(self.settings, dict(os.environ, NAIVE_FAUST_CONFIG=json.dumps(config)))
        command = [sys.executable, "-m", "bench.naive_faust", "worker", "-l", "info"]
        service = Service("naive Faust agent", command, env, self.run_dir / "naive-faust.log", config["web_port"])
        try:
            result = await self._follow_baseline("naive Faust", service, self.naive_app_id, events)
        finally:
            service.stop()
        self.results["naive"] = result
        log(
            f"naive Faust: {result['processing_rate']:,.0f}/s processing, "
            f"{result['e2e_rate']:,.0f}/s from process start to committed"
        )

    async def _follow_baseline(self, name: str, service: Service, group: str, events: int) -> dict[str, Any]:
        """Start a baseline process that reports its count at /progress and follow it to the end."""
        service.start()
        healthy = await asyncio.get_running_loop().run_in_executor(None, service.wait_healthy, "/healthz", 120.0)

        async def count() -> int | None:
            answer = await http_json(service, "/progress")
            return None if answer is None else answer["count"]

        return await self._follow(name, service, group, events, count, service.started_at, healthy)

    async def quix(self, load: workload.Workload) -> None:
        events = len(load)
        # The output topic is made like the promotions topic, before the app starts.
        outputs = dataclasses.replace(self.topics["promotions"], logical="quix-milestones", name=self.quix_outputs)
        await apply_topics(self.settings, {outputs.logical: outputs})
        config: dict[str, Any] = {
            "consumer_group": self.quix_group,
            "topic": self.transactions,
            "output_topic": self.quix_outputs,
            "state_dir": str(self.run_dir / "quix-data"),
            "web_port": free_port(),
            "commit_interval": self.settings.commit_interval_s,
            "processing_guarantee": self.settings.processing_guarantee.replace("_", "-"),
        }
        env = settings_env(self.settings, dict(os.environ, QUIX_BENCH_CONFIG=json.dumps(config)))
        command = [os.environ.get(QUIX_PYTHON) or sys.executable, "-m", "bench.quix_app"]
        service = Service("Quix Streams app", command, env, self.run_dir / "quix.log", config["web_port"])
        try:
            result = await self._follow_baseline("Quix", service, self.quix_group, events)

            async def outputs_settled() -> bool:
                return await self.offsets.total(self.quix_outputs) >= load.expected_outputs

            try:
                await wait_for("the Quix app's outputs", outputs_settled, timeout=30, service=service)
            except BenchError as exc:
                log(f"WARNING: {str(exc).splitlines()[0]}")
        finally:
            service.stop()
        result["outputs"] = await self.offsets.total(self.quix_outputs)
        result["expected_outputs"] = load.expected_outputs
        self.results["quix"] = result
        log(
            f"Quix: {result['processing_rate']:,.0f}/s processing, {result['e2e_rate']:,.0f}/s from process "
            f"start to committed; {result['outputs']:,} outputs (expected {load.expected_outputs:,})"
        )
        if result["outputs"] != load.expected_outputs:
            log("WARNING: the Quix app's outputs differ from what the workload should yield")

    async def worker_outcomes(self, topic: str | None = None, worker: Service | None = None) -> dict[str, int] | None:
        """Records of ``topic`` (default: transactions) a worker (default: the worker) has processed, by
        outcome, from its /metrics page."""
        worker = worker or self.worker
        assert worker is not None
        text = await http_text(worker, "/metrics")
        if text is None:
            return None
        pattern = re.compile(
            r'^milestream_events_consumed_total\{outcome="([^"]+)",topic="'
            + re.escape(topic or self.transactions)
            + r'"\} ([0-9.e+]+)$',
            re.M,
        )
        return {m.group(1): int(float(m.group(2))) for m in pattern.finditer(text)}

    async def worker_processed(self) -> int | None:
        outcomes = await self.worker_outcomes()
        return None if outcomes is None else sum(outcomes.values())

    async def milestream(
        self,
        load: workload.Workload,
        settings: Settings | None = None,
        result_key: str = "milestream",
        milestones: int = 1,
    ) -> None:
        """One worker works through the pre-loaded transactions; its rate goes to ``results[result_key]``.
        ``settings``: another deployment's (a second app id over the same topics), with ``milestones``
        copies of the benchmark milestone defined."""
        settings = settings or self.settings
        outputs_before = await self.offsets.total(self.promotions)
        expected = load.expected_outputs * milestones
        worker = self.worker = worker_service(
            "milestream worker",
            settings,
            self.run_dir / ("milestream-worker.log" if settings is self.settings else f"{settings.app_id}.log"),
        )
        worker.start()
        healthy = await asyncio.get_running_loop().run_in_executor(None, worker.wait_healthy, "/healthz", 120.0)

        async def knows_definition() -> bool:
            return workload.MILESTONE_ID in (await http_json(worker, "/definitions") or {})

        await wait_for("worker loading the benchmark milestone", knows_definition, timeout=60, service=worker)
        log(f"milestream worker healthy {healthy - worker.started_at:.1f} s after start, milestone loaded")
        outcomes: dict[str, int] = {}

        async def count() -> int | None:
            found = await self.worker_outcomes()
            if found is None:
                return None
            outcomes.clear()
            outcomes.update(found)
            return sum(outcomes.values())

        result = await self._follow("milestream", worker, settings.app_id, len(load), count, worker.started_at, healthy)
        result["outcomes"] = dict(outcomes)

        async def outputs_settled() -> bool:
            return await self.offsets.total(self.promotions) - outputs_before >= expected

        try:
            await wait_for("milestone events on the promotions topic", outputs_settled, timeout=30, service=worker)
        except BenchError as exc:
            log(f"WARNING: {str(exc).splitlines()[0]}")
        result["outputs"] = await self.offsets.total(self.promotions) - outputs_before
        result["expected_outputs"] = expected
        result["dead_letters"] = await self.offsets.total(self.topics["dead-letters"].name)
        result["late_events"] = await self.offsets.total(self.topics["late-events"].name)
        self.results[result_key] = result
        log(
            f"milestream: {result['processing_rate']:,.0f}/s processing, {result['e2e_rate']:,.0f}/s from process "
            f"start to committed; {result['outputs']:,} outputs (expected {expected:,}), "
            f"{result['dead_letters']} dead letters, outcomes {result['outcomes']}"
        )
        if result["outputs"] != expected or result["dead_letters"]:
            log("WARNING: outputs differ from what the workload should yield")

    async def milestream_workers(self, load: workload.Workload, count: int) -> None:
        """``count`` workers of one more deployment (an app id of its own, so its group reads the
        pre-loaded transactions from the start) share the partitions: ``results["workers"]``. The
        worker before them, caught up, waits idle for the latency phase."""
        base = self.settings.model_copy(update={"app_id": f"{self.settings.app_id}-x{count}"})
        # Everything on the transactions topic: the latency phase adds its records to the pre-loaded ones.
        self.end = await self.offsets.end_offsets(self.transactions)
        events = sum(self.end.values())
        outputs_before = await self.offsets.total(self.promotions)
        # The same input yields the same milestone events: as many as the worker before produced, if one ran.
        expected = outputs_before or load.expected_outputs
        workers = []
        for n in range(count):
            settings = base.model_copy(
                update={
                    "web_port": free_port(),
                    "data_dir": str(self.run_dir / f"milestream-x{count}-{n + 1}"),
                    "worker_id": f"x{count}-{n + 1}",
                }
            )
            workers.append(
                worker_service(
                    f"milestream worker {n + 1} of {count}", settings, self.run_dir / f"milestream-x{count}-{n + 1}.log"
                )
            )
        try:
            for worker in workers:
                worker.start()
            loop = asyncio.get_running_loop()
            healthy = max(
                await asyncio.gather(
                    *(loop.run_in_executor(None, worker.wait_healthy, "/healthz", 120.0) for worker in workers)
                )
            )
            per_worker: list[dict[str, int]] = [{} for _ in workers]
            consumers = {
                f"consumer {n + 1}": worker.process.pid if worker.process else None for n, worker in enumerate(workers)
            }
            # The group's first assignment gives every partition to the worker that joins first (and the
            # first /metrics read may come after it has begun); the others' joining then moves partitions
            # (a revocation, a restore). The deployment's own rate and CPU are measured from the moment
            # every worker processes to the last record.
            window: dict[str, Any] = {}

            async def processed() -> int | None:
                found = await asyncio.gather(*(self.worker_outcomes(worker=worker) for worker in workers))
                for n, outcomes in enumerate(found):
                    if outcomes is not None:
                        per_worker[n] = outcomes
                total = sum(sum(outcomes.values()) for outcomes in per_worker)
                now = time.time()
                if "since" not in window and all(sum(outcomes.values()) for outcomes in per_worker):
                    meter = CpuMeter({**consumers, "broker": self.broker_pid, "bench": os.getpid()})
                    window.update(since=now, at=total, meter=meter)
                if "since" in window and "done" not in window and total >= events:
                    window.update(done=now, cpu=window["meter"].read())
                return total

            started = min(worker.started_at for worker in workers)
            result = await self._follow(f"{count} workers", workers, base.app_id, events, processed, started, healthy)

            async def outputs_settled() -> bool:
                return await self.offsets.total(self.promotions) - outputs_before >= expected

            try:
                await wait_for("the workers' milestone events", outputs_settled, timeout=30, service=workers[0])
            except BenchError as exc:
                log(f"WARNING: {str(exc).splitlines()[0]}")
        finally:
            for worker in workers:
                worker.stop()
        records_each = ", ".join(f"{sum(outcomes.values()):,}" for outcomes in per_worker)
        outputs = await self.offsets.total(self.promotions) - outputs_before
        if outputs != expected or sum(sum(outcomes.values()) for outcomes in per_worker) != events:
            log("WARNING: the workers' records or outputs differ from the worker's before them")
        if not ("cpu" in window and events > window["at"] and window["done"] > window["since"]):
            # Too few records to see both at work (--quick): the first to join did them all, or all but
            # a few, before the group's rebalance. A whole-phase figure would time the rebalance.
            log(f"WARNING: {count} workers: not measured, not every worker processed records ({records_each} each)")
            return
        cpu = window["cpu"]
        cpu["consumer"] = sum(cpu.get(name, 0.0) for name in consumers)
        measured = rates(events - window["at"], window["since"], window["done"], started, None, cpu)
        measured.update(
            workers=count,
            whole_rate=result["processing_rate"],
            per_worker=[sum(outcomes.values()) for outcomes in per_worker],
            outputs=outputs,
            expected_outputs=expected,
        )
        self.results["workers"] = measured
        log(
            f"{count} workers: {measured['processing_rate']:,.0f}/s over the last {measured['events']:,} records, "
            f"once all were processing ({measured['whole_rate']:,.0f}/s over the whole phase; {records_each} records "
            f"each), {outputs:,} outputs (expected {expected:,})"
        )

    async def output_capacity(self, count: int) -> float:
        """The worker's rate on the latency workload (every event yields a milestone event).

        ``count`` such transactions are produced at once; the rate is how fast the
        worker works through them. Returns once their outputs are all on the promotions topic.
        """
        worker = self.worker
        assert worker is not None
        load = workload.latency_transactions(count, self.now, seed=13, tag=f"cal-{self.tag}")
        base = await self.worker_processed() or 0
        outputs_before = await self.offsets.total(self.promotions)
        seen: dict[str, Any] = {"count": 0, "first": None, "first_count": 0}
        await self.produce_fast(load.records)

        async def done() -> bool:
            now = time.time()
            seen["count"] = (await self.worker_processed() or base) - base
            if seen["count"] > 0 and seen["first"] is None:
                # Records processed before this first sight are not in the timed span: not counted either.
                seen["first"], seen["first_count"] = now, seen["count"]
            return seen["count"] >= count

        async def progress() -> int:
            return seen["count"]

        finished = await wait_for(
            "worker on output-producing transactions",
            done,
            progress=progress,
            timeout=120 + count / 20,
            interval=CAPACITY_POLL_S,
            service=worker,
        )

        async def outputs_out() -> bool:
            return await self.offsets.total(self.promotions) >= outputs_before + count

        await wait_for("outputs of the capacity run", outputs_out, timeout=60, service=worker)
        timed = count - seen["first_count"]
        if timed < count // 2:
            raise BenchError(f"the capacity run was over before it could be timed ({count:,} events): use more")
        rate = timed / max(finished - seen["first"], CAPACITY_POLL_S)
        self.results["output_capacity"] = {
            "events": count,
            "timed_events": timed,
            "processing_seconds": finished - seen["first"],
            "processing_rate": rate,
        }
        log(f"worker capacity when every event yields an output: {rate:,.0f}/s ({count:,} events)")
        return rate

    async def latency(self, count: int) -> None:
        worker = self.worker
        if worker is None:
            raise BenchError("the latency phase needs the milestream phase's worker")
        rate = self.args.latency_rate
        if not rate:
            capacity = await self.output_capacity(max(CAPACITY_EVENTS_MIN, min(CAPACITY_EVENTS_MAX, count)))
            rate = min(LATENCY_RATE_CAP, 0.5 * capacity)
        count = max(1, min(count, int(rate * self.args.latency_seconds)))
        load = workload.latency_transactions(count, self.now, tag=f"lat-{self.tag}")
        promotions = await self.offsets.partitions(self.promotions)
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            client_id="milestream-bench-latency",
        )
        await consumer.start()
        consumer.assign(promotions)
        await consumer.seek_to_end(*promotions)
        for tp in promotions:
            await consumer.position(tp)
        arrivals: dict[str, float] = {}
        created: dict[str, float] = {}  # the output record's timestamp: when the worker produced it
        acks: dict[tuple[int, int], tuple[float, float]] = {}
        outputs = 0

        async def read_outputs() -> None:
            nonlocal outputs
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
                arrived = time.time()
                for messages in batches.values():
                    for message in messages:
                        outputs += 1
                        cause = orjson.loads(message.value)["cause"]
                        if cause not in arrivals:
                            arrivals[cause] = arrived
                            created[cause] = message.timestamp / 1000

        reader = asyncio.create_task(read_outputs())
        # Lingering 5 ms, as the Java client (since Kafka 4.0) and librdkafka do by default: a request
        # per record cost this process and the broker CPU that the measured worker competes for.
        producer = AIOKafkaProducer(**client_options(self.settings), acks=1, linger_ms=5)
        await producer.start()
        try:
            log(f"latency: {count:,} transactions at {rate:,.0f}/s, each yielding one milestone event")
            started = time.monotonic()
            meter = CpuMeter(
                {
                    "consumer": worker.process.pid if worker.process else None,
                    "broker": self.broker_pid,
                    "bench": os.getpid(),
                }
            )
            for i, (key, value) in enumerate(load.records):
                due = started + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at = time.time()
                future = await producer.send(self.transactions, value, key=key)

                def acked(f: asyncio.Future, sent_at: float = sent_at) -> None:
                    if not f.cancelled() and f.exception() is None:
                        meta = f.result()
                        acks[(meta.partition, meta.offset)] = (sent_at, time.time())

                future.add_done_callback(acked)
            await producer.flush()
            sending = time.monotonic() - started
            achieved = count / sending
            cpu = meter.read()

            async def all_arrived() -> bool:
                return len(acks) == count and all(f"{self.transactions}/{p}/{o}" in arrivals for p, o in acks)

            async def progress() -> int:
                return len(arrivals)

            try:
                await wait_for(
                    "outputs of the latency phase", all_arrived, progress=progress, timeout=120, service=worker
                )
            except BenchError as exc:
                log(f"WARNING: {str(exc).splitlines()[0]}")
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await producer.stop()
            await consumer.stop()
        from_ack, from_send, in_worker, delivery = [], [], [], []
        windows: dict[int, list[float]] = {}
        first_sent = min((sent_at for sent_at, _ in acks.values()), default=0.0)
        for (partition, offset), (sent_at, acked_at) in acks.items():
            cause = f"{self.transactions}/{partition}/{offset}"
            arrived = arrivals.get(cause)
            if arrived is not None:
                from_ack.append((arrived - acked_at) * 1000)
                from_send.append((arrived - sent_at) * 1000)
                in_worker.append((created[cause] - acked_at) * 1000)
                delivery.append((arrived - created[cause]) * 1000)
                windows.setdefault(int((sent_at - first_sent) // LATENCY_WINDOW_S), []).append(from_ack[-1])
        # p50 and max per window of send time: a latency that keeps growing means the worker fell behind.
        timeline = [
            {"from_s": w * LATENCY_WINDOW_S, "events": len(v), "p50": percentiles(v)["p50"], "max": max(v)}
            for w, v in sorted(windows.items())
        ]
        self.results["latency"] = {
            "events": count,
            "target_rate": rate,
            "achieved_rate": achieved,
            "outputs": outputs,
            "missing": count - len(from_ack),
            "from_ack": percentiles(from_ack),
            "from_send": percentiles(from_send),
            # from_ack split at the output record's timestamp (the worker's clock, the same machine)
            "ack_to_output_produced": percentiles(in_worker),
            "output_produced_to_arrival": percentiles(delivery),
            "timeline": timeline,
            "window_s": LATENCY_WINDOW_S,
            "cores": {name: used / sending for name, used in cpu.items() if name != "wall"},
        }
        p = self.results["latency"]["from_ack"]
        log(
            f"latency from ack: p50 {p['p50']:.1f} ms, p95 {p['p95']:.1f} ms, p99 {p['p99']:.1f} ms, "
            f"max {p['max']:.1f} ms; {count - len(from_ack)} inputs without output"
        )

    async def cleanup(self, external: bool) -> None:
        if self.worker is not None:
            self.worker.stop()
        if external:  # a shared cluster: remove what this run created
            try:
                names = await self.offsets.topics_starting_with(
                    self.settings.topic_prefix,
                    self.settings.app_id,
                    self.naive_app_id,
                    f"changelog__{self.quix_group}--",  # Quix's state changelog
                )
                await self.offsets.delete_topics(names)
                log(f"deleted {len(names)} benchmark topics")
            except Exception as exc:  # best effort
                log(f"could not delete the benchmark topics: {exc}")
        await self.offsets.close()


async def kafka_phases(
    args: argparse.Namespace,
    connection: Settings,
    run_dir: Path,
    broker_pid: int | None,
) -> tuple[Bench, workload.Workload]:
    bench = Bench(args, connection, run_dir, broker_pid)
    try:
        load = await bench.setup()
        await bench.produce(load)
        if "raw" not in args.skip:
            await bench.raw_consumer(len(load))
        if "naive" not in args.skip:
            await bench.naive_faust(len(load))
        if "quix" not in args.skip:
            await bench.quix(load)
        if "milestream" not in args.skip:
            await bench.milestream(load)
        if "workers" not in args.skip:
            await bench.milestream_workers(load, WORKERS)
        if "milestream" not in args.skip and "latency" not in args.skip and args.latency_events > 0:
            await bench.latency(args.latency_events)
    finally:
        await bench.cleanup(external=broker_pid is None)
    return bench, load


def inprocess_phase(
    args: argparse.Namespace, now: datetime, load: workload.Workload | None, run_dir: Path
) -> dict[str, Any]:
    count = args.inprocess_events
    if load is not None and count <= len(load):
        records = load.records[:count]  # the same generator and seed: the first records of the Kafka workload
    else:
        records = workload.transactions(count, args.customers, now).records
    log(f"in-process: TopologyTestDriver over {len(records):,} transactions ...")
    # What the phases before left in this process (the pre-loaded workload, the clients) would be
    # walked by every full collection, about 4 µs a record of the harness's own: frozen, as the
    # worker freezes what it holds from start-up (worker/garbage.py).
    gc.collect()
    gc.freeze()
    try:
        result: dict[str, Any] = {"driver": inprocess.driver_rate(records, now)}
        log(f"in-process driver: {result['driver']['rate']:,.0f}/s; Engine.apply alone ...")
        result["engine"] = inprocess.engine_rate(records, now)
        result["parts"] = inprocess.parts(records, now, Settings().max_poll_records)
    finally:
        gc.unfreeze()
    log(
        f"in-process Engine.apply: {result['engine']['rate']:,.0f}/s "
        f"(decoding alone {result['engine']['decode_rate']:,.0f}/s); the worker's decoder "
        f"{result['parts']['decode_us']:.1f} µs/event, a document's round trip through RocksDB "
        f"{result['parts']['state_us']:.1f} µs/event"
    )
    if args.profile_events > 0:
        text, top = inprocess.profile(records[: args.profile_events], now)
        (run_dir / "profile.txt").write_text(text)
        result["hotspots"] = top
        result["profile_events"] = min(args.profile_events, len(records))
        log(f"profile of {result['profile_events']:,} events written to {run_dir / 'profile.txt'}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Fresh topics make aiokafka log retries (no leader yet, no coordinator yet) that it then recovers from.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    wall_started = time.monotonic()
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    run_dir = BENCH_DIR / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    kafka_label = "external cluster (KAFKA_BOOTSTRAP_SERVERS)"
    broker = None
    results: dict[str, Any] = {}
    load = None
    now = datetime.now(timezone.utc)
    kafka_needed = not {"raw", "naive", "quix", "milestream"} <= args.skip
    try:
        if kafka_needed:
            if external:
                connection = Settings.from_env()  # bootstrap servers and MILESTREAM_KAFKA_* security
            else:
                log("starting a fresh local Kafka broker ...")
                broker = started_broker(BENCH_DIR / "kafka")
                connection = Settings(kafka_bootstrap_servers=broker.bootstrap)
                kafka_label = broker.kafka_version or "unknown"
                log(f"Kafka {kafka_label} on {broker.bootstrap}")
            bench, load = asyncio.run(kafka_phases(args, connection, run_dir, broker.pid if broker else None))
            results.update(bench.results)
            settings = bench.settings
            now = bench.now
        else:
            settings = Settings(commit_interval_s=args.commit_interval)
            kafka_label = local_kafka().kafka_version() or "unknown"
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
            log("broker stopped")
        for data in ("milestream-data", "naive-data", "quix-data"):
            shutil.rmtree(run_dir / data, ignore_errors=True)

    if "inprocess" not in args.skip:
        results["inprocess"] = inprocess_phase(args, now, load, run_dir)

    ratios: dict[str, dict[str, float]] = {}
    ms = results.get("milestream")
    for key in ("raw", "naive", "quix"):
        base = results.get(key)
        if ms and base:
            ratios[key] = {
                "processing": ms["processing_rate"] / base["processing_rate"],
                "e2e": ms["e2e_rate"] / base["e2e_rate"],
            }
            if ms.get("events_per_cpu_s") and base.get("events_per_cpu_s"):
                ratios[key]["cpu"] = ms["events_per_cpu_s"] / base["events_per_cpu_s"]
    results["ratios"] = ratios
    results.update(
        {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "revision": report.git_revision(),
            "machine": report.machine(kafka_label),
            "settings": {
                "events": args.events,
                "customers": args.customers,
                "partitions": load_topics(settings)["transactions"].partitions,
                "max_poll_records": settings.max_poll_records,
                "checkpoint_interval_ms": settings.checkpoint_interval_ms,
                "commit_interval": args.commit_interval,
                "processing_guarantee": settings.processing_guarantee,
                "latency_events": args.latency_events,
                "inprocess_events": args.inprocess_events,
            },
            "wall_clock_seconds": time.monotonic() - wall_started,
        }
    )
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report.console_report(results))
    print(f"\nlogs and results.json in {run_dir}")
    if not args.no_write:
        report.update_benchmarks_md(results)
        print(f"updated {report.BENCHMARKS_MD.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
