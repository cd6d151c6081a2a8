"""``milestream backfill --milestone M``: run (or resume) a backfill, show its progress, ``--status``, ``--dry-run``."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import IO, Any

import orjson
from aiokafka import TopicPartition

from ..errors import UsageError
from ..schemas.backfill import BackfillStatus
from ..schemas.base import utc_iso
from ..settings import Settings
from ..topics import load_topics
from . import plan
from .copier import Copier, merged
from .status import applied_offsets, read_status


class Progress:
    """One line on stderr per second at most (rewritten in place on a terminal): state, records, rate, ETA."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.first_copied: int | None = None
        self.shown_at = 0.0
        self.last_state = ""

    def __call__(self, status: BackfillStatus) -> None:
        moment = time.monotonic()
        if status.state == self.last_state and moment - self.shown_at < (1.0 if self.tty else 5.0):
            return
        self.shown_at, self.last_state = moment, status.state
        if self.first_copied is None:
            self.first_copied = status.records_copied
        done = status.records_copied - self.first_copied
        rate = done / max(moment - self.started, 1e-6)
        left = status.records_total - status.records_copied
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left > 0 and status.state == "copying" else ""
        share = 100 * status.records_copied / status.records_total if status.records_total else 100.0
        what = {
            "starting": "waiting for the workers to take the run up",
            "copying": f"copied {status.records_copied:,}/{status.records_total:,} records ({share:.1f} %), "
            f"{rate:,.0f} records/s{eta}",
            "applying": "waiting for the workers to apply the last copies",
            "done": f"done: {status.records_copied:,} records copied",
        }[status.state]
        line = f"backfill {status.milestone_id} (run {status.run_id}): {what}"
        if self.tty:
            self.out.write("\r\x1b[2K" + line + ("\n" if status.state == "done" else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


async def open_clients(settings: Settings) -> SimpleNamespace:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    from ..cli import command_client_options, started

    options = command_client_options(settings)
    consumer = await started(
        # A short fetch wait: a fetch long-polling at the end of a partition delays every request behind it.
        AIOKafkaConsumer(enable_auto_commit=False, max_partition_fetch_bytes=4 << 20, fetch_max_wait_ms=100, **options),
        settings,
    )
    producer = await started(
        AIOKafkaProducer(
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=settings.producer_max_batch_bytes,
            **options,
        ),
        settings,
    )
    admin = await started(AIOKafkaAdminClient(**options), settings)
    return SimpleNamespace(consumer=consumer, producer=producer, admin=admin)


async def stop_clients(clients: SimpleNamespace) -> None:
    for client in (clients.consumer, clients.producer):
        await client.stop()
    await clients.admin.close()


async def _backfill(settings: Settings, args: argparse.Namespace, out: IO[bytes], err: IO[str]) -> int:
    from ..cli import read_definitions
    from ..pipeline.topology import Topology

    topology = Topology(settings, load_topics(settings))
    await read_definitions(settings, topology)
    compiled = topology.registry.milestones.get(args.milestone)
    if compiled is None:
        raise UsageError(f"--milestone {args.milestone!r}: no such milestone in topic {topology.definitions_topic}")
    clients = await open_clients(settings)
    try:
        status_topic = topology.topics["backfills"].name
        previous = await read_status(clients.consumer, status_topic, args.milestone, settings.command_timeout_s)
        # Let go of the status partition, so no fetch long-polls in front of the plan's offset requests.
        clients.consumer.unsubscribe()
        if args.status:
            return await _show_status(settings, topology, clients, previous, args.milestone, err)
        plan.check_backfillable(compiled)
        if args.dry_run:
            return await _dry_run(topology, compiled, clients, out, err)
        status = await Copier(settings, topology, compiled, clients, Progress(err)).run(previous)
        return 0 if status.state == "done" else 1
    finally:
        await stop_clients(clients)


async def _show_status(
    settings: Settings, topology: Any, clients: Any, status: BackfillStatus | None, milestone_id: str, err: IO[str]
) -> int:
    if status is None:
        err.write(f"milestone {milestone_id!r} has had no backfill\n")
        return 1
    tps = [TopicPartition(topology.backfill_topic, p) for p in range(topology.topics["backfill"].partitions)]
    applied = await applied_offsets(clients.admin, settings.app_id, tps)
    ends = await clients.consumer.end_offsets(tps)
    behind = sum(max(0, ends[tp] - max(applied[tp], 0)) for tp in tps)
    lines = [
        f"backfill {status.milestone_id} (run {status.run_id}): {status.state}",
        f"  reads from {utc_iso(status.from_time)}: {status.records_copied:,}/{status.records_total:,} records copied",
        f"  started {utc_iso(status.started_at)}, updated {utc_iso(status.updated_at)}"
        + (f", finished {utc_iso(status.finished_at)}" if status.finished_at else ""),
        f"  workers ({settings.app_id}): "
        + ("every copy applied" if behind == 0 else f"{behind:,} backfill records still to apply"),
    ]
    err.write("\n".join(lines) + "\n")
    return 0


async def _dry_run(topology: Any, compiled: Any, clients: Any, out: IO[bytes], err: IO[str]) -> int:
    """The simulator over the retained records, as if the milestone had existed all along; nothing is published."""
    from ..simulate import Simulation

    start_time = plan.from_time(compiled)
    definition = compiled.definition
    simulation = Simulation(topology.settings)
    settings_item = topology.registry.settings_for(definition.org_id).model_dump(mode="json")
    definition_item = definition.model_dump(mode="json", by_alias=True)
    for emitted in simulation.load_definitions([settings_item, definition_item], start_time):
        out.write(emitted + b"\n")  # a dead letter: the definition is refused as it stands
    sources = [
        TopicPartition(t, p) for t in topology.backfill_sources for p in range(topology.topics["backfill"].partitions)
    ]
    starts = await plan.start_offsets(clients.consumer, sources, start_time)
    ends = await clients.consumer.end_offsets(sources)
    order = {t: i for i, t in enumerate(topology.backfill_sources)}
    kinds: Counter[str] = Counter()
    read = 0
    async for _, message in merged(clients.consumer, starts, ends, order):
        read += 1
        for emitted in simulation.feed(message.value or b"null"):
            kinds.update(_printed(emitted, definition.milestone_id, out))
    for emitted in simulation.finish(datetime.now(timezone.utc)):
        kinds.update(_printed(emitted, definition.milestone_id, out))
    summary = ", ".join(f"{k}={n}" for k, n in sorted(kinds.items())) or "nothing"
    err.write(
        f"dry run of {definition.milestone_id}: {read:,} records read from {utc_iso(start_time)} on; it would emit "
        f"{summary} (those already sent live keep their ids); nothing was published\n"
    )
    return 0


def _printed(emitted: bytes, milestone_id: str, out: IO[bytes]) -> list[str]:
    body = orjson.loads(emitted)
    if body.get("milestone_id") != milestone_id or body.get("type") != "milestone_event":
        return []
    out.write(emitted + b"\n")
    return [body["kind"]]


def main(args: argparse.Namespace, settings: Settings) -> int:
    from ..cli import run_against_broker

    what = f"backfill {args.milestone}"
    return run_against_broker(settings, what, lambda: _backfill(settings, args, sys.stdout.buffer, sys.stderr))
