"""A worker that keeps crashing still makes and commits progress on every partition, and stops on time.

(a) Under continuous load over 8 partitions the worker is SIGKILLed 4 times, 5-10 s apart, and
    restarted at once each time: within seconds of each restart every partition's committed offset
    moves again, soon after the last one every partition is committed to its end, and the outputs
    are exactly those of the purchases (none lost, none under a second id).
(b) SIGTERM stops a worker within 10 s: with the broker up (cleanly, status 0) and with the broker
    gone (a broker of its own, killed first).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from bench.cluster import Offsets
from tests.factories import transaction
from tests.integration.test_crash_recovery import FIRES_AT, sub_target_definition
from tests.support.worker import (
    WorkerProcess,
    consume,
    create_topics,
    free_port,
    isolated_settings,
    produce,
    topic,
    two_workers,
    wait_until_balanced,
)

pytestmark = pytest.mark.kafka

CUSTOMERS = 300
PURCHASES_PER_SECOND = 150
KILLS = 4
# From a kill (and at once a restart) until every partition has committed something new. The worker
# needs ~3 s to start on a loaded 2-core machine; a restart that waits for the dead member's session
# timeout (it took ~28 s with the old 30 s default) fails this.
PROGRESS_WITHIN_S = 12.0
# From the last kill until every partition is committed to its end (the load stops soon after).
CAUGHT_UP_WITHIN_S = 30.0
SIGTERM_WITHIN_S = 10.0


class Load(threading.Thread):
    """Purchases for CUSTOMERS customers in turn, at a steady rate, until stopped."""

    def __init__(self, settings, now: datetime) -> None:
        super().__init__(daemon=True)
        self.settings, self.now = settings, now
        self.stopped = threading.Event()
        self.sources: dict[str, list[str]] = {}  # customer -> topic/partition/offset of each purchase
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all", linger_ms=5, enable_idempotence=True
        )
        await producer.start()
        try:
            n = 0
            while not self.stopped.is_set():
                batch = []
                for _ in range(PURCHASES_PER_SECOND // 10):
                    customer = f"cust-{n % CUSTOMERS:04d}"
                    event = transaction(customer, "100", (self.now - timedelta(minutes=1)).isoformat(), n)
                    future = await producer.send(
                        topic(self.settings, "transactions"), orjson.dumps(event), key=customer.encode()
                    )
                    batch.append((customer, future))
                    n += 1
                for customer, future in batch:
                    meta = await future
                    self.sources.setdefault(customer, []).append(f"{meta.topic}/{meta.partition}/{meta.offset}")
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()


class CommitWatch(threading.Thread):
    """Samples the group's committed offset and the end offset of every input partition."""

    def __init__(self, settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.stopped = threading.Event()
        self.samples: list[tuple[float, dict[int, int], dict[int, int]]] = []  # (time, committed, end)

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        offsets = Offsets(self.settings)
        await offsets.start()
        tps = [TopicPartition(topic(self.settings, "transactions"), p) for p in range(8)]
        try:
            while not self.stopped.is_set():
                try:
                    end = await offsets.consumer.end_offsets(tps)
                    committed = await offsets.committed(self.settings.app_id, tps)
                except Exception:  # the coordinator moving or not known yet: sample again
                    await asyncio.sleep(0.5)
                    continue
                self.samples.append(
                    (
                        time.monotonic(),
                        {tp.partition: committed[tp] for tp in tps},
                        {tp.partition: end[tp] for tp in tps},
                    )
                )
                await asyncio.sleep(0.3)
        finally:
            await offsets.close()

    def first(self, since: float, condition, until: float = float("inf")) -> float | None:
        """Seconds from ``since`` to the first sample in (since, until) where ``condition(committed, end)`` holds."""
        for at, committed, end in self.samples:
            if since <= at < until and condition(committed, end):
                return at - since
        return None

    def progress_after_kill(self, killed_at: float, until: float) -> float | None:
        """Seconds from a kill until every partition has committed past where the killed worker left it."""
        # A commit the killed worker sent just before it died can still land: the baseline is taken later.
        baseline = next((committed for at, committed, _ in self.samples if at >= killed_at + 0.5), None)
        if baseline is None:
            return None
        return self.first(
            killed_at,
            lambda committed, end: all(committed[p] > baseline[p] or committed[p] >= end[p] for p in committed),
            until,
        )


def expected_outputs(sources: dict[str, list[str]]) -> dict[tuple[str, str], str]:
    """(customer, trigger) -> source of the purchase that fires it."""
    return {
        (customer, trigger): purchases[nth - 1]
        for customer, purchases in sources.items()
        for trigger, nth in FIRES_AT.items()
        if len(purchases) >= nth
    }


def test_repeated_sigkills_leave_no_partition_behind(kafka_bootstrap, tmp_path):
    now = datetime.now(timezone.utc)
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")  # the default session timeout
    create_topics(settings)
    produce(settings, [("definitions", "m-restarts", sub_target_definition("m-restarts", now))])
    load, watch = Load(settings, now), CommitWatch(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    rng = random.Random(10)
    kills: list[float] = []
    try:
        worker.start()
        load.start()
        watch.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(5, 10))
            worker.kill()
            kills.append(time.monotonic())
            worker.start()
        time.sleep(max(0.0, kills[-1] + PROGRESS_WITHIN_S + 1 - time.monotonic()))
        load.stopped.set()
        load.join(30)
        assert load.error is None, load.error
        caught_up = None
        deadline = kills[-1] + CAUGHT_UP_WITHIN_S + 60  # wait longer, to report how long it took
        while caught_up is None and time.monotonic() < deadline:
            time.sleep(1)
            caught_up = watch.first(kills[-1], lambda committed, end: committed == end)
    finally:
        load.stopped.set()
        watch.stopped.set()
        watch.join(10)
        worker.stop()

    progress = [
        watch.progress_after_kill(killed_at, until) for killed_at, until in zip(kills, kills[1:] + [time.monotonic()])
    ]
    shown = [round(p, 1) if p is not None else None for p in progress]
    assert all(p is not None and p <= PROGRESS_WITHIN_S for p in progress), (
        f"seconds from each kill until every partition committed something new (None: not before the next kill): "
        f"{shown}\n{worker.log_tail()}"
    )
    assert caught_up is not None and caught_up <= CAUGHT_UP_WITHIN_S, (
        f"every partition committed to its end {caught_up} s after the last kill\n{worker.log_tail()}"
    )
    print(
        f"seconds from each kill to progress on every partition: {shown}; all committed to the end: {caught_up:.1f} s"
    )
    expected = expected_outputs(load.sources)
    events = consume(settings, "promotions", lambda seen: len({e["event_id"] for e in seen}) >= len(expected), 60)
    unique = {e["event_id"]: e for e in events}
    fired = {
        (e["customer_id"], "achievement" if e["kind"] == "achievement" else f"sub_target:{e['trigger_names'][0]}"): e[
            "cause"
        ]
        for e in unique.values()
    }
    assert len(unique) == len(fired), "an output fired twice under different ids"
    assert fired == expected


def _sigterm(worker: WorkerProcess) -> tuple[int | None, float]:
    """SIGTERM the worker; (exit status or None if still running after 30 s, seconds it took)."""
    assert worker.process is not None
    started = time.monotonic()
    os.killpg(worker.process.pid, signal.SIGTERM)
    try:
        status = worker.process.wait(30)
    except subprocess.TimeoutExpired:
        status = None
    took = time.monotonic() - started
    worker.kill()
    return status, took


def test_sigterm_stops_the_worker_in_time_with_the_broker_up(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    produce(
        settings, [("transactions", "cust-1", transaction("cust-1", "100", datetime.now(timezone.utc).isoformat()))]
    )
    time.sleep(2)
    status, took = _sigterm(worker)
    assert status == 0 and took < SIGTERM_WITHIN_S, (status, took, worker.log_tail())


def test_sigterm_stops_the_worker_in_time_with_the_broker_gone(tmp_path):
    from deploy import local_kafka

    local_kafka.fetch()
    broker = local_kafka.start(tmp_path / "kafka", fresh=True)
    try:
        settings = isolated_settings(broker.bootstrap, tmp_path / "data")
        create_topics(settings)
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.start()
        produce(
            settings, [("transactions", "cust-1", transaction("cust-1", "100", datetime.now(timezone.utc).isoformat()))]
        )
        time.sleep(2)
        os.killpg(broker.pgid or broker.pid, signal.SIGKILL)
        time.sleep(2)
        status, took = _sigterm(worker)
    finally:
        broker.stop()
    assert status is not None and took < SIGTERM_WITHIN_S, (status, took, worker.log_tail())
    assert "did not finish within" in worker.log_tail(200)  # the forced exit says so


def test_a_worker_restarted_at_another_address_joins_and_is_routed_to(kafka_bootstrap, tmp_path):
    """Static members get their previous assignment back, URL table included: a worker restarted
    under the same id at another port joins as a new member (its id carries a digest of its URLs),
    and the other worker forwards requests for its partitions to the new address."""
    token = "restart-api-token"
    one, two = two_workers(kafka_bootstrap, tmp_path, api_token=token)
    moved = WorkerProcess(one.settings.model_copy(update={"web_port": free_port()}), tmp_path / "moved.log")
    try:
        one.start()
        two.start()
        wait_until_balanced([one, two], 8)
        one.stop()
        moved.start(timeout=90)
        wait_until_balanced([moved, two], 8, timeout=90)
        for n in range(16):  # customers on every partition, half of them owned by the moved worker
            request = urllib.request.Request(
                f"http://127.0.0.1:{two.settings.web_port}/customers/nobody-{n}/milestones",
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status in (200, 404), f"nobody-{n}: {status}"
    finally:
        for worker in (moved, one, two):
            worker.stop()
