"""A real `milestream worker` process against the test broker, and Kafka I/O helpers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from milestream.kafka_client import client_options
from milestream.settings import Settings
from milestream.topics import apply_topics, load_topics
from milestream.worker.web import authorization_header


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_settings(bootstrap: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings with their own topic prefix, consumer group and ports, so tests never collide."""
    tag = uuid.uuid4().hex[:8]
    values = {
        "kafka_bootstrap_servers": bootstrap,
        "topic_prefix": f"t{tag}.",
        "app_id": f"milestream-t{tag}",
        "data_dir": str(data_dir),
        "web_port": free_port(),
        "commit_interval_s": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.environment()}


def create_topics(settings: Settings) -> None:
    asyncio.run(apply_topics(settings, load_topics(settings)))


@dataclass
class WorkerProcess:
    settings: Settings
    log_path: Path
    process: subprocess.Popen | None = None
    starts: int = field(default=0)
    env: dict[str, str] = field(default_factory=dict)  # added to the settings' environment

    def start(self, timeout: float = 120.0) -> None:
        self.launch()
        self.wait_until_healthy(timeout)

    def launch(self) -> None:
        """Start the worker process without waiting for it to become healthy."""
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "milestream.cli", "worker"],
            env={**settings_env(self.settings), **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_healthy(self, timeout: float = 120.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.http("/healthz", expect_json=True) is not None:
                return
            time.sleep(0.5)
        raise RuntimeError(f"worker not healthy after {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def wait_for_exit(self, timeout: float) -> int | None:
        """The worker's exit status, or None if it still runs after ``timeout`` seconds."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Crash the worker: no clean shutdown, no final commit."""
        self.stop(signal.SIGKILL)

    def http(self, path: str, expect_json: bool = False) -> Any:
        url = f"http://127.0.0.1:{self.settings.web_port}{path}"
        request = urllib.request.Request(url, headers=authorization_header(self.settings))
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
                body = response.read()
        except OSError:
            return None
        return json.loads(body) if expect_json else body.decode()

    def http_until(self, path: str, holds: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        """A JSON page once ``holds(page)``: pages show state as of the last checkpoint, which
        follows the batch's outputs by a moment (runtime/checkpoint.py)."""
        deadline = time.monotonic() + timeout
        while True:
            page = self.http(path, expect_json=True)
            if page is not None and holds(page) or time.monotonic() > deadline:
                return page
            time.sleep(0.2)

    def wait_for_definition(self, milestone_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if milestone_id in (self.http("/definitions", expect_json=True) or {}):
                return
            time.sleep(0.3)
        raise AssertionError(f"worker never loaded {milestone_id}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def two_workers(bootstrap: str, folder: Path, **overrides: Any) -> list[WorkerProcess]:
    """Two workers of one group on topics of their own (created), not started: ids ``worker-1``
    and ``worker-2``, each with its own port and data folder."""
    first = isolated_settings(bootstrap, folder / "data-1", worker_id="worker-1", **overrides)
    second = first.model_copy(
        update={"web_port": free_port(), "data_dir": str(folder / "data-2"), "worker_id": "worker-2"}
    )
    create_topics(first)
    return [WorkerProcess(first, folder / "worker-1.log"), WorkerProcess(second, folder / "worker-2.log")]


def owned_partitions(worker: WorkerProcess) -> int | None:
    """The worker's ``milestream_owned_partitions`` gauge (None before its first assignment)."""
    for line in (worker.http("/metrics") or "").splitlines():
        if line.startswith("milestream_owned_partitions "):
            return int(float(line.split()[1]))
    return None


def wait_until_balanced(workers: list[WorkerProcess], partitions: int, timeout: float = 60.0) -> list[int | None]:
    """Wait until every worker of a group owns some of its ``partitions`` and together all of them:
    until then a worker joining rebalances the group, and requests for a moving partition get 503."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [owned_partitions(worker) for worker in workers]
        if all(owned) and sum(n or 0 for n in owned) == partitions:
            return owned
        if time.monotonic() > deadline:
            raise AssertionError(f"the group did not balance in {timeout:g} s: partitions owned {owned}")
        time.sleep(0.5)


def topic(settings: Settings, logical: str) -> str:
    return load_topics(settings)[logical].name


async def _produce(settings: Settings, records: list[tuple[str, bytes | None, Any]]) -> list[tuple[str, int, int]]:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for logical, key, value in records:
            raw = value if isinstance(value, (bytes, type(None))) else orjson.dumps(value)
            futures.append(await producer.send(topic(settings, logical), raw, key=key))
        sent = [await future for future in futures]
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in sent]


def produce(settings: Settings, records: list[tuple[str, bytes | str | None, Any]]) -> list[tuple[str, int, int]]:
    """Produce (logical topic, key, value) records; str keys are UTF-8 encoded.
    Returns where each record landed: (topic, partition, offset)."""
    encoded = [(t, k.encode() if isinstance(k, str) else k, v) for t, k, v in records]
    return asyncio.run(_produce(settings, encoded))


async def _consume(
    settings: Settings, logical: str, until: Callable[[list[dict]], bool], timeout: float, isolation_level: str
) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic(settings, logical),
        **client_options(settings),
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(seen):
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                seen.extend(orjson.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return seen


def consume(
    settings: Settings,
    logical: str,
    until: Callable[[list[dict]], bool],
    timeout: float = 60.0,
    isolation_level: str = "read_uncommitted",
) -> list[dict]:
    """Read a topic from the beginning until ``until(records)`` holds or the timeout passes
    (``read_committed``: as a consumer of an exactly-once worker's outputs reads it)."""
    return asyncio.run(_consume(settings, logical, until, timeout, isolation_level))


def consume_quietly(settings: Settings, logical: str, quiet: float = 3.0, timeout: float = 60.0) -> list[dict]:
    """Read a topic from the beginning until no new record arrived for ``quiet`` seconds."""
    state = {"count": -1, "since": time.monotonic()}

    def settled(records: list[dict]) -> bool:
        if len(records) != state["count"]:
            state["count"], state["since"] = len(records), time.monotonic()
            return False
        return time.monotonic() - state["since"] >= quiet

    return consume(settings, logical, settled, timeout)


async def _read_to_end(settings: Settings, topic_name: str) -> list[tuple[bytes | None, bytes | None]]:
    # Committed records only: the worker writes its changelog in transactions (runtime/checkpoint.py).
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic_name)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic_name) or set()
        tps = [TopicPartition(topic_name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)  # read committed: the last stable offset
        records: list[tuple[bytes | None, bytes | None]] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic_name} to its end: {sorted(remaining)} behind")
            for messages in (await consumer.getmany(*remaining, timeout_ms=1000)).values():
                records.extend((m.key, m.value) for m in messages)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:  # past transaction markers too
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


def read_to_end(settings: Settings, topic_name: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic (full name) up to its current end, as (key, value), partition by partition."""
    return asyncio.run(_read_to_end(settings, topic_name))


async def _committed_offsets(settings: Settings, logical: str) -> dict[int, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic(settings, logical)}


def committed_offsets(settings: Settings, logical: str) -> dict[int, int]:
    """The worker group's committed offsets on a topic, by partition (none: nothing committed)."""
    return asyncio.run(_committed_offsets(settings, logical))


async def _end_offsets(settings: Settings, logical: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        name = topic(settings, logical)
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def end_offsets(settings: Settings, logical: str) -> dict[int, int]:
    """The end offset of each partition of a topic."""
    return asyncio.run(_end_offsets(settings, logical))


def wait_for_commits(settings: Settings, logical: str, timeout: float = 60.0) -> dict[int, int]:
    """Wait until the worker group has committed every record of a topic; return the commits."""
    expected = {p: end for p, end in end_offsets(settings, logical).items() if end > 0}
    deadline = time.monotonic() + timeout
    while True:
        committed = committed_offsets(settings, logical)
        if all(committed.get(p, -1) >= end for p, end in expected.items()):
            return committed
        if time.monotonic() > deadline:
            raise AssertionError(f"commits on {logical} stand at {committed}, records end at {expected}")
        time.sleep(0.5)
