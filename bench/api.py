"""``python -m bench.api``: the HTTP API's latency on two workers holding many customers, and what the
leaderboard index costs the event throughput.

1. A broker (a fresh local one unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), topics under a fresh prefix
   for each load.
2. **Loads, leaderboard off and on** (``--rounds`` of each, alternating): the benchmark milestone
   (bench/workload.py) with its ``leaderboard`` setting off or on; one transaction per customer
   pre-loaded; two workers started; events/s from the first committed record to the last, and over
   the middle of the load (from 20 % to 90 % committed: ``steady``), by which the index's cost is
   judged. The last load (on) leaves two workers holding every customer's state and leaderboard entry.
3. **API latency** on them while a steady input stream (``--input-rate`` transactions/s of the same
   customers) keeps them processing: top-100 of the leaderboard and a customer's rank
   (``/leaderboards/customers/{id}``) together, each at a rate of ``--rates`` for ``--seconds`` s, sent
   open-loop to either worker; then a customer's progress in the milestone at the same rate.

Results on stdout and in the "HTTP API" section of BENCHMARKS.md (between markers, rewritten each run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from milestream.kafka_client import client_options, security_values
from milestream.settings import Settings
from milestream.topics import apply_topics, load_topics

from . import inprocess, workload
from .cluster import Offsets, bench_connection
from .procs import BenchError, CpuMeter, Service, free_port, worker_service
from .report import git_revision, machine, write_block
from .run import http_text

START_MARKER = "<!-- api:start -->"
END_MARKER = "<!-- api:end -->"
TOKEN = "bench-api-token"
WORKERS = 2
TARGETS_MS = {"top": 50.0, "rank": 50.0, "progress": 10.0}


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def customer(n: int) -> str:
    return f"cust-{n:07d}"


def records(customers: int, now: datetime, seed: int, tag: str) -> list[tuple[bytes, bytes]]:
    """One transaction per customer, amounts spread so the leaderboard has distinct values and ties."""
    rng = random.Random(seed)
    start = workload.month_start(now)
    span = max((now - start).total_seconds() - 1, 1.0)
    out = []
    for n in range(customers):
        name = customer(n)
        when = start + timedelta(seconds=rng.random() * span)
        cents = rng.randint(*workload.AMOUNT_CENTS)
        out.append((name.encode(), workload.transaction(f"{tag}-{n}", name, when, cents, f"store-{n % 50:02d}")))
    return out


class Cluster:
    """Topics under a fresh prefix and two workers sharing their partitions."""

    def __init__(self, connection: Settings, folder: Path, label: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.settings = Settings(
            **security_values(connection),
            kafka_bootstrap_servers=connection.kafka_bootstrap_servers,
            topic_prefix=f"bench-api-{tag}.",
            app_id=f"milestream-bench-api-{tag}",
            data_dir=str(folder / f"{label}-1"),
            web_port=free_port(),
            api_token=TOKEN,
            worker_id=f"{label}-1",
        )
        self.topics = load_topics(self.settings)
        self.offsets = Offsets(self.settings)
        self.workers: list[Service] = []
        self.folder = folder
        self.label = label
        self.profile = False

    async def setup(self, leaderboard: bool, now: datetime) -> None:
        await self.offsets.start()
        await apply_topics(self.settings, self.topics)
        definition = workload.definition(now, leaderboard=leaderboard)
        producer = AIOKafkaProducer(**client_options(self.settings), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                self.topics["definitions"].name, orjson.dumps(definition), key=workload.MILESTONE_ID.encode()
            )
        finally:
            await producer.stop()

    async def produce(self, batch: list[tuple[bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(**client_options(self.settings), acks=1, linger_ms=20, max_batch_size=512 * 1024)
        await producer.start()
        try:
            pending = []
            for key, value in batch:
                pending.append(await producer.send(self.topics["transactions"].name, value, key=key))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    def start_workers(self) -> None:
        for n in range(WORKERS):
            settings = self.settings.model_copy(
                update={
                    "web_port": self.settings.web_port if n == 0 else free_port(),
                    "data_dir": str(self.folder / f"{self.label}-{n + 1}"),
                    "worker_id": f"{self.label}-{n + 1}",
                }
            )
            profile = ["-m", "cProfile", "-o", str(self.folder / f"{self.label}-{n + 1}.prof")] if self.profile else []
            service = worker_service(
                f"worker {self.label}-{n + 1}", settings, self.folder / f"{self.label}-{n + 1}.log", profile
            )
            service.start()
            self.workers.append(service)

    async def follow(self, total: int, timeout: float) -> dict[str, float]:
        """Wait until the group has committed every transaction; events/s from the first commit on."""
        end = await self.offsets.end_offsets(self.topics["transactions"].name)
        first: tuple[float, int] | None = None
        seen: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout
        while True:
            for worker in self.workers:
                worker.check_alive()
            lag = await self.offsets.lag(self.settings.app_id, end)
            done = total - lag
            now = time.monotonic()
            seen.append((now, done))
            if first is None and done > 0:
                first = (now, done)
            if lag == 0:
                break
            if now > deadline:
                raise BenchError(f"{self.label}: {lag:,} of {total:,} transactions not committed after {timeout:.0f} s")
            await asyncio.sleep(0.25)
        assert first is not None
        seconds = max(time.monotonic() - first[0], 1e-6)
        rate = (total - first[1]) / seconds
        return {"events": total, "seconds": seconds, "rate": rate, "steady": steady(seen, total)}

    async def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        await self.offsets.close()


def steady(seen: list[tuple[float, int]], total: int, low: float = 0.2, high: float = 0.9) -> float:
    """Events/s while the group committed the middle of the load (from ``low`` to ``high`` of it):
    past the workers' start, the group's first rebalances and restores, whose timing varies from run
    to run, and before the last partitions drain one by one."""
    start = next(((t, d) for t, d in seen if d >= low * total), None)
    stop = next(((t, d) for t, d in seen if d >= high * total), None)
    if start is None or stop is None or stop[0] <= start[0]:
        return 0.0
    return (stop[1] - start[1]) / (stop[0] - start[0])


# ----------------------------------------------------------------- API load
async def paced(
    session: Any, urls: list[str], rate: float, seconds: float, path_of: Any, expect: int = 200
) -> dict[str, Any]:
    """GETs at ``rate``/s for ``seconds`` s, open loop (each starts at its scheduled time whatever the
    others do), to a random worker each; latencies in ms of the answers with the expected status."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    rng = random.Random(5)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def one(url: str) -> None:
        started = time.perf_counter()
        try:
            async with session.get(url, headers=headers) as response:
                await response.read()
                status = response.status
        except Exception as exc:  # a timeout or a refused connection counts as a failure
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return
        if status == expect:
            latencies.append((time.perf_counter() - started) * 1000)
        else:
            failures[str(status)] = failures.get(str(status), 0) + 1

    tasks = []
    count = int(rate * seconds)
    start = time.perf_counter()
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(rng.choice(urls) + path_of(rng))))
    sent_in = time.perf_counter() - start
    await asyncio.gather(*tasks)
    return {**summary(latencies), "requests": count, "sent_rate": count / sent_in, "failures": failures}


def summary(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"ok": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(latencies)
    return {
        "ok": len(ordered),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


async def steady_input(
    cluster: Cluster, customers: int, rate: float, stop: asyncio.Event, now: datetime
) -> tuple[int, float]:
    """Transactions of existing customers at ``rate``/s until ``stop``; how many were sent, in how long."""
    producer = AIOKafkaProducer(**client_options(cluster.settings), acks=1, linger_ms=5)
    await producer.start()
    rng = random.Random(9)
    sent, start = 0, time.perf_counter()
    try:
        while not stop.is_set():
            due = int((time.perf_counter() - start) * rate)
            for _ in range(due - sent):
                name = customer(rng.randrange(customers))
                value = workload.transaction(
                    f"live-{sent}", name, now, rng.randint(*workload.AMOUNT_CENTS), "store-live"
                )
                await producer.send(cluster.topics["transactions"].name, value, key=name.encode())
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent, time.perf_counter() - start


async def checkpoints(workers: list[Service]) -> float:
    """The workers' checkpoints so far (``milestream_batch_records``' count: one per checkpoint)."""
    total = 0.0
    for worker in workers:
        for line in (await http_text(worker, "/metrics") or "").splitlines():
            if line.startswith("milestream_batch_records_count"):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def api_phase(cluster: Cluster, args: argparse.Namespace, rate: float, now: datetime) -> dict[str, Any]:
    import aiohttp

    urls = [f"http://127.0.0.1:{w.port}" for w in cluster.workers]
    mid = workload.MILESTONE_ID
    n = args.customers
    stop = asyncio.Event()
    end_before = await cluster.offsets.total(cluster.topics["transactions"].name)
    input_task = asyncio.create_task(steady_input(cluster, n, args.input_rate, stop, now))
    connector = aiohttp.TCPConnector(limit=200)
    results: dict[str, Any] = {}
    # The client's own full collections would walk the pre-loaded transactions it keeps for the next
    # load (25-60 ms each, every few seconds), and count as the API's latency: leave them out.
    gc.collect()
    gc.freeze()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Warm-up: connections, and the first leaderboard scans.
        await paced(session, urls, 20, 2, lambda rng: f"/leaderboards/{mid}?top=100")
        started = time.monotonic()
        checkpoints_before = await checkpoints(cluster.workers)
        meter = CpuMeter(
            {**{w.name: w.process.pid if w.process else None for w in cluster.workers}, "bench": os.getpid()}
        )
        top, rank = await asyncio.gather(
            paced(session, urls, rate, args.seconds, lambda rng: f"/leaderboards/{mid}?top=100"),
            paced(
                session,
                urls,
                rate,
                args.seconds,
                lambda rng: f"/leaderboards/customers/{customer(rng.randrange(n))}?milestone_id={mid}",
            ),
        )
        cpu = meter.read()
        checkpointed = await checkpoints(cluster.workers) - checkpoints_before
        results["checkpoints_per_s"] = checkpointed / max(cpu["wall"], 1e-6)
        results["top"], results["rank"] = top, rank
        results["cpu"] = {name: used / max(cpu["wall"], 1e-6) for name, used in cpu.items() if name != "wall"}
        results["progress"] = await paced(
            session,
            urls,
            rate,
            args.seconds,
            lambda rng: f"/customers/{customer(rng.randrange(n))}/milestones/{mid}",
        )
        phase_seconds = time.monotonic() - started
    gc.unfreeze()
    stop.set()
    sent, input_seconds = await input_task
    end = await cluster.offsets.end_offsets(cluster.topics["transactions"].name)
    lag_at_end = await cluster.offsets.lag(cluster.settings.app_id, end)
    results["rate"] = rate
    results["input"] = {
        "rate": args.input_rate,
        "sent": sent,
        "seconds": input_seconds,
        "measured_seconds": phase_seconds,
        "lag_at_end": lag_at_end,
        "topic_records": sum(end.values()) - end_before,
    }
    return results


# ------------------------------------------------------------------- report
def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def best(runs: list[dict[str, float]], measure: str = "steady") -> float:
    return max(r[measure] for r in runs)


def index_cost(throughput: dict[str, list[dict[str, float]]], measure: str = "steady") -> float:
    """The share of throughput lost with the leaderboard on, best run against best run: by default
    of the rates over the middle of each load (``steady``), which leave out how long the group took
    to settle at the start; ``measure="rate"``: of the whole loads'."""
    return 1 - best(throughput["on"], measure) / best(throughput["off"], measure)


def write(result: dict[str, Any]) -> str:
    env = result["machine"]
    rows = []
    for api in result["api"]:
        for key, what in (
            ("top", "Top 100 (`/leaderboards/{id}?top=100`)"),
            ("rank", "A customer's rank (`/leaderboards/customers/{id}`)"),
            ("progress", "Progress (`/customers/{id}/milestones/{mid}`)"),
        ):
            r = api[key]
            met = r["p99"] is not None and r["p99"] < TARGETS_MS[key] and not r["failures"]
            failures = ", ".join(f"{k}: {v}" for k, v in sorted(r["failures"].items())) or "none"
            target = f"< {TARGETS_MS[key]:.0f} ms: {'met' if met else '**missed**'}" if api["rate"] >= 200 else "–"
            rows.append(
                f"| {api['rate']:,.0f}/s | {what} | {r['ok']:,} | {failures} | {_ms(r['p50'])} | {_ms(r['p99'])} | "
                f"{_ms(r['max'])} | {target} |"
            )
    cpu_lines = []
    for api in result["api"]:
        cpu = api["cpu"]
        workers = sum(v for k, v in cpu.items() if k.startswith("worker"))
        cpu_lines.append(
            f"* at {api['rate']:,.0f} requests/s each (top 100 and rank together): the two workers used "
            f"{workers:.2f} cores, this benchmark's process (the HTTP client and the input producer) "
            f"{cpu['bench']:.2f}, everything else on the machine (the broker, other users) {cpu['others']:.2f}, "
            f"of {env['cpus']}; "
            f"input {api['input']['sent'] / api['input']['seconds']:,.0f}/s, "
            f"{api['input']['lag_at_end']:,} transactions not yet committed at the end; "
            f"{api['checkpoints_per_s']:,.0f} checkpoints/s (both workers)."
        )
    throughput = result["throughput"]
    cost = index_cost(throughput)

    def runs(setting: str, measure: str) -> str:
        return ", ".join(f"{r[measure]:,.0f}" for r in throughput[setting])

    whole_cost = index_cost(throughput, "rate")

    block = (
        f"{START_MARKER}\n"
        f"Run on **{result['date']}** at commit `{result['revision']}`, {env['cpus']} CPUs ({env['cpu_model']}), "
        f"Python {env['python']} (Milestream's {env.get('milestream_build', 'pure Python')} build), "
        f"Kafka: {result['kafka']}. {WORKERS} workers, "
        f"{result['partitions']} partitions, **{result['customers']:,} customers** in state (one transaction each), "
        f"one milestone with its leaderboard on.\n\n"
        f"API latency while the workers process a steady {result['api'][0]['input']['rate']:,.0f} transactions/s, "
        f"{result['seconds']:.0f} s per operation and rate, requests open-loop to either worker (top 100 and "
        "rank at the same time, then progress alone); latency as the client sees it, on the same machine:\n\n"
        "| Rate (each) | Request | Answered 200 | Failures | p50 | p99 | Max | Target (p99, at 200/s) |\n"
        "|---:|---|---:|---|---:|---:|---:|---|\n" + "\n".join(rows) + "\n\n"
        "CPU during the top-100 and rank load:\n\n" + "\n".join(cpu_lines) + "\n\n"
        "The leaderboard index's cost on throughput: the same pre-loaded transactions, two fresh workers each "
        "time, the settings alternating. Events/s over the middle of each load (from 20 % to 90 % of it "
        "committed: past the group's start, its first rebalances and restores, which take a varying share "
        "of a load of half a minute) and over the whole load, from the first commit to the last:\n\n"
        "| Leaderboard setting | Transactions | Events/s, middle of the load (each run) | Best | "
        "Events/s, whole load (each run) | Best |\n|---|---:|---:|---:|---:|---:|\n"
        f"| off | {result['customers']:,} | {runs('off', 'steady')} | {best(throughput['off']):,.0f} | "
        f"{runs('off', 'rate')} | {best(throughput['off'], 'rate'):,.0f} |\n"
        f"| on | {result['customers']:,} | {runs('on', 'steady')} | {best(throughput['on']):,.0f} | "
        f"{runs('on', 'rate')} | {best(throughput['on'], 'rate'):,.0f} |\n\n"
        f"Cost: **{cost:.1%}** of the throughput over the middle of the loads, best against best (target < 10 %: "
        f"{'met' if cost < 0.10 else '**missed**'}); {whole_cost:.1%} over the whole loads.\n"
        + in_process_note(result.get("in_process"))
        + f"{END_MARKER}"
    )
    write_block(START_MARKER, END_MARKER, block, "HTTP API\n\n" + INTRO.rstrip("\n"))
    return block


def in_process_note(measured: dict[str, Any] | None) -> str:
    """The in-process measure of the index's cost per record, as a paragraph ("" if not run)."""
    if not measured or not measured.get("off") or not measured.get("on"):
        return ""
    off, on = min(measured["off"]), min(measured["on"])

    def each(setting: str) -> str:
        return ", ".join(f"{v:.1f}" for v in measured[setting])

    return (
        f"\nIn process, without the broker (`bench/inprocess.py` `index_cost`: {measured['customers']:,} of the "
        "same transactions through the worker's topology into a batch's overlay, the checkpoint's write to a "
        f"RocksDB store every {measured['checkpoint_records']:,} records, the API's counts mirror following it): "
        f"{each('off')} µs a record with the leaderboard off, {each('on')} with it on; best against best, "
        f"the index adds **{on - off:.1f} µs a record, {on / off - 1:.1%}** of the record's cost there (the "
        "worker's cost per event also holds the Kafka client's, the changelog's and the outputs' work, which "
        "the index does not add to).\n"
    )


INTRO = (
    "`python -m bench.api` (part of `make bench`; `BENCH_API_CUSTOMERS`, default 1,000,000) loads one\n"
    "transaction per customer through two real workers (one milestone, its leaderboard on), waits until\n"
    "every one is committed, then measures the API while the workers keep processing a steady input stream:\n"
    "the top 100 of the leaderboard and a customer's rank at 200 requests/s each, then a customer's progress,\n"
    "and again at 50 requests/s each. It also runs the same load with the leaderboard setting off, four times\n"
    "each, to measure what the index costs. `--customers 50000` sizes it down; `--help` lists the other flags.\n"
)


# --------------------------------------------------------------------- main
async def run(args: argparse.Namespace, connection: Settings, folder: Path) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    load = records(args.customers, now, seed=3, tag="load")
    # First, in process: the index's own cost per record, without the broker's and the host's spread.
    sample = load[: args.inprocess_customers]
    # A checkpoint's share of one store: a batch's records spread over the input's partitions.
    per_store = max(connection.max_poll_records // load_topics(connection)["transactions"].partitions, 1)
    in_process = inprocess.index_cost(sample, now, per_store) if sample else {"off": [], "on": []}
    if sample:
        log(
            f"in process, {len(sample):,} customers: µs/record with the leaderboard off "
            + ", ".join(f"{v:.1f}" for v in in_process["off"])
            + "; on "
            + ", ".join(f"{v:.1f}" for v in in_process["on"])
        )
    throughput: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    api: list[dict[str, Any]] = []
    partitions = 0
    # The settings alternate, so a machine busier at one moment weighs on both; the last run (on) stays
    # up for the API load.
    plan = [("on", r) for r in range(args.rounds)] if args.api_only else []
    plan = plan or [(setting, r) for r in range(args.rounds) for setting in ("off", "on")]
    for setting, round_ in plan:
        cluster = Cluster(connection, folder, f"lb-{setting}-{round_ + 1}")
        cluster.profile = args.profile
        partitions = cluster.topics["transactions"].partitions
        try:
            await cluster.setup(setting == "on", now)
            log(f"leaderboard {setting}: producing {len(load):,} transactions ({cluster.settings.topic_prefix})")
            await cluster.produce(load)
            cluster.start_workers()
            result = await cluster.follow(len(load), timeout=args.timeout)
            throughput[setting].append(result)
            log(
                f"leaderboard {setting}: {len(load):,} transactions committed, {result['rate']:,.0f} events/s "
                f"({result['steady']:,.0f} events/s over the middle of the load)"
            )
            if setting == "on" and round_ == args.rounds - 1:
                for worker in cluster.workers:
                    await asyncio.get_running_loop().run_in_executor(None, worker.wait_healthy, "/healthz", 120.0)
                for rate in args.rates:
                    log(f"API load: {rate:g} req/s each for {args.seconds:g} s, input {args.input_rate:g}/s")
                    api.append(await api_phase(cluster, args, rate, now))
                    log(
                        "  p50/p99 ms: "
                        + ", ".join(f"{k} {_ms(api[-1][k]['p50'])}/{_ms(api[-1][k]['p99'])}" for k in TARGETS_MS)
                        + f"; {api[-1]['checkpoints_per_s']:,.0f} checkpoints/s; cores: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in api[-1]["cpu"].items())
                    )
        finally:
            await cluster.stop()
            if args.profile:
                import pstats

                for prof in sorted(folder.glob(f"{cluster.label}-*.prof")):
                    log(f"profile of {prof.stem}")
                    pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(40)
                    pstats.Stats(str(prof)).sort_stats("tottime").print_stats(25)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "customers": args.customers,
        "in_process": {"customers": len(sample), "checkpoint_records": per_store, **in_process},
        "seconds": args.seconds,
        "partitions": partitions,
        "throughput": throughput,
        "api": api,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=int(os.environ.get("BENCH_API_CUSTOMERS", 1_000_000)))
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[200.0, 50.0],
        help="requests/s of each operation, one API load per rate (default 200,50)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="loads with the leaderboard off and on (default 4)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per operation (default 30)")
    parser.add_argument("--input-rate", type=float, default=500.0, help="transactions/s during the API load")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed for each load")
    parser.add_argument(
        "--inprocess-customers",
        type=int,
        default=100_000,
        help="customers of the in-process measure of the index's cost (default 100,000; 0: skip it)",
    )
    parser.add_argument("--api-only", action="store_true", help="skip the run with the leaderboard off")
    parser.add_argument("--profile", action="store_true", help="run the workers under cProfile; print the profiles")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    revision = git_revision()
    folder = Path(tempfile.mkdtemp(prefix="milestream-api-bench-"))
    broker = None
    try:
        settings, broker, kafka = bench_connection(folder / "kafka")
        result = asyncio.run(run(args, settings, folder))
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 1
    finally:
        Service.stop_all()
        if broker is not None:
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    result.update({"revision": revision, "machine": machine(kafka), "kafka": kafka})
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if not args.no_write:
        print(write(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
