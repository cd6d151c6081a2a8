"""The broker of a benchmark run and what the benchmark asks it: offsets, lag, topics."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from milestream.kafka_client import client_options
from milestream.settings import Settings

COORDINATOR_ATTEMPTS = 60


def local_kafka() -> ModuleType:
    """``deploy/local_kafka.py``, which starts and stops the local broker."""
    from deploy import local_kafka as module

    return module


# A benchmark's broker is started for the run and shares the 2-core host with what it measures.
# HotSpot's optimising compiler (C2) kept compiling for minutes after a start and took 0.3 to 0.5 of
# a core while doing it: the worker's event-to-output latency tripled while it ran (BENCHMARKS.md,
# "A broker compiling itself"). The quick compiler (C1) alone served these loads at no more broker
# CPU. A production broker is long past its compilation; MILESTREAM_KAFKA_JAVA_OPTS comes later on
# the command line, so ``-XX:TieredStopAtLevel=4`` there gives the full tiered JIT back.
BROKER_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1",)


def started_broker(folder: Path) -> Any:
    """A fresh local broker with its data under ``folder`` (Kafka's jars fetched first if missing)."""
    module = local_kafka()
    module.fetch()
    return module.start(folder, fresh=True, jvm_options=BROKER_JVM_OPTIONS)


def bench_connection(folder: Path) -> tuple[Settings, Any, str]:
    """(settings, broker, label): the cluster KAFKA_BOOTSTRAP_SERVERS names (broker None), else a fresh
    local broker under ``folder``, which the caller stops."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip():
        return Settings.from_env(), None, "external cluster (KAFKA_BOOTSTRAP_SERVERS)"
    broker = started_broker(folder)
    return Settings(kafka_bootstrap_servers=broker.bootstrap), broker, broker.kafka_version or "local"


def interrupt_on_sigterm(signum: int, frame: Any) -> None:
    """A SIGTERM handler: stop as on Ctrl-C, so the benchmark's clean-up runs."""
    raise KeyboardInterrupt(f"signal {signum}")


class Offsets:
    """End offsets and consumer-group offsets of topics, over one admin and one plain consumer."""

    def __init__(self, settings: Settings) -> None:
        self.admin = AIOKafkaAdminClient(**client_options(settings), client_id="milestream-bench-admin")
        self.consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False, client_id="milestream-bench-offsets"
        )

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def partitions(self, topic: str) -> list[TopicPartition]:
        parts = self.consumer.partitions_for_topic(topic)
        if not parts:
            await self.consumer._client.force_metadata_update()  # noqa: SLF001 - a freshly created topic
            parts = self.consumer.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(parts)]

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        tps = await self.partitions(topic)
        return dict(await self.consumer.end_offsets(tps)) if tps else {}

    async def total(self, topic: str) -> int:
        """Records in a topic (sum of end offsets: nothing is deleted during a run)."""
        return sum((await self.end_offsets(topic)).values())

    async def committed(self, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        for attempt in range(COORDINATOR_ATTEMPTS):
            try:
                found = await self.admin.list_consumer_group_offsets(group, partitions=tps)
                break
            except GroupCoordinatorNotAvailableError:
                # A fresh broker creates its offsets topic on the first group's request: not there yet.
                if attempt == COORDINATOR_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5)
        return {tp: (meta.offset if meta is not None and meta.offset >= 0 else 0) for tp, meta in found.items()}

    async def lag(self, group: str, end: dict[TopicPartition, int]) -> int:
        """Records of ``end`` the group has not committed yet."""
        committed = await self.committed(group, list(end))
        return sum(max(0, offset - committed.get(tp, 0)) for tp, offset in end.items())

    async def delete_topics(self, names: list[str]) -> None:
        if names:
            await self.admin.delete_topics(names)

    async def topics_starting_with(self, *prefixes: str) -> list[str]:
        return sorted(t for t in await self.admin.list_topics() if t.startswith(prefixes))
