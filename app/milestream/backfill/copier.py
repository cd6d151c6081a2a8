"""A backfill run: copy a milestone's past from the input topics to the backfill topic.

The order of a run, each step checkpointed in its status record so a run stopped
anywhere (kill -9 included) resumes where it stopped:

1. ``starting``: a start marker on every partition of the backfill topic; wait until
   the workers have taken them up (their group's committed offsets are past them). From
   then on every worker has the milestone registered, so live processing counts each
   record it has not read yet; the end offsets now are where the copies stop.
2. ``copying``: the records from the milestone's start to those end offsets, in time
   order across topics, each to its own partition number, with headers naming the
   milestone, the run and the source (``topic/partition/offset``). The status record
   keeps the next offset to copy per partition, written once the copies before it are
   acknowledged.
3. ``applying``: an end marker on every partition; wait until the workers are past them.
4. ``done``.

Copies sent again after a resume are harmless: a worker applies each source record
to the milestone once (pipeline/backfill.py).
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

from aiokafka import TopicPartition

from ..engine.registry import Compiled
from ..errors import UsageError
from ..pipeline.backfill import source_headers
from ..pipeline.topology import Topology
from ..schemas.backfill import BackfillStatus, PositionProgress
from ..schemas.codec import dumps
from ..settings import Settings
from . import plan
from .status import applied_offsets, write_status

FETCH_RECORDS = 5000
MARKER_POLL_S = 0.2  # how often the command asks whether the workers are past its markers

Report = Callable[[BackfillStatus], None]


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def now() -> datetime:
    return datetime.now(timezone.utc)


async def merged(
    consumer: Any, start: dict[TopicPartition, int], stop: dict[TopicPartition, int], topic_order: dict[str, int]
) -> AsyncIterator[tuple[TopicPartition, Any]]:
    """The records from ``start`` to ``stop`` (exclusive) of every partition, in time order (ties: topic
    order, then offset): a return comes after its bill, an enrolment where it happened."""
    active = [tp for tp in start if start[tp] < stop[tp]]
    consumer.assign(active)
    for tp in active:
        consumer.seek(tp, start[tp])
    buffers: dict[TopicPartition, deque] = {tp: deque() for tp in active}
    positions = dict(start)
    heap: list[tuple[int, int, int, int]] = []
    index = {i: tp for i, tp in enumerate(active)}
    ids = {tp: i for i, tp in index.items()}
    starving = set(active)  # partitions with records to read but none buffered: nothing is yielded before them

    def push(tp: TopicPartition) -> None:
        head = buffers[tp][0]
        heapq.heappush(heap, (head.timestamp, topic_order.get(tp.topic, 0), head.offset, ids[tp]))

    while starving or heap:
        if starving:
            wanted = sorted(starving)
            batches = await consumer.getmany(*wanted, timeout_ms=1000, max_records=FETCH_RECORDS)
            for tp, messages in batches.items():
                buffers[tp].extend(m for m in messages if m.offset < stop[tp])
            for tp in wanted:
                positions[tp] = await consumer.position(tp)
                if positions[tp] >= stop[tp]:
                    consumer.pause(tp)
                if buffers[tp]:
                    push(tp)
                    starving.discard(tp)
                elif positions[tp] >= stop[tp]:
                    starving.discard(tp)
            continue
        *_, i = heapq.heappop(heap)
        tp = index[i]
        yield tp, buffers[tp].popleft()
        if buffers[tp]:
            push(tp)
        elif positions[tp] < stop[tp]:
            starving.add(tp)


class Copier:
    def __init__(
        self, settings: Settings, topology: Topology, compiled: Compiled, clients: Any, report: Report
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.compiled = compiled
        self.milestone_id = compiled.definition.milestone_id
        self.clients = clients  # consumer, producer, admin (command.py)
        self.report = report
        self.backfill_topic = topology.backfill_topic
        self.status_topic = topology.topics["backfills"].name
        partitions = topology.topics["backfill"].partitions
        self.backfill_tps = [TopicPartition(self.backfill_topic, p) for p in range(partitions)]
        self.sources = [TopicPartition(t, p) for t in topology.backfill_sources for p in range(partitions)]
        self.topic_order = {t: i for i, t in enumerate(topology.backfill_sources)}

    async def run(self, previous: BackfillStatus | None) -> BackfillStatus:
        start_time = plan.from_time(self.compiled)
        resume = previous is not None and previous.state != "done" and previous.from_time == start_time
        if resume:
            assert previous is not None
            status = previous
        else:
            starts = await plan.start_offsets(self.clients.consumer, self.sources, start_time)
            status = BackfillStatus(
                milestone_id=self.milestone_id,
                run_id=new_run_id(),
                state="starting",
                from_time=start_time,
                positions={plan.position(tp): PositionProgress(start=o, stop=o, copied=o) for tp, o in starts.items()},
                records_total=0,
                records_copied=0,
                started_at=now(),
                updated_at=now(),
            )
            await self._save(status)
        if status.state == "starting":
            await self._markers(status, "start")
            ends = await self.clients.consumer.end_offsets(self.sources)
            for tp in self.sources:
                progress = status.positions[plan.position(tp)]
                progress.stop = max(progress.start, ends[tp])
            status.records_total = sum(p.stop - p.start for p in status.positions.values())
            status.state = "copying"
            await self._save(status)
        if status.state == "copying":
            await self._copy(status)
            status.state = "applying"
            await self._save(status)
        if status.state == "applying":
            await self._markers(status, "end")
            status.state = "done"
            status.finished_at = now()
            await self._save(status)
        return status

    async def _save(self, status: BackfillStatus) -> None:
        status.updated_at = now()
        await write_status(self.clients.producer, self.status_topic, status)
        self.report(status)

    async def _markers(self, status: BackfillStatus, marker: str) -> None:
        """A marker on every partition of the backfill topic; return once the workers are past them all."""
        body = dumps(
            {
                "type": "backfill_marker",
                "schema_version": 1,
                "milestone_id": self.milestone_id,
                "run_id": status.run_id,
                "marker": marker,
            }
        )
        headers = source_headers(self.milestone_id, status.run_id)
        sent = [
            await self.clients.producer.send(self.backfill_topic, body, partition=tp.partition, headers=headers)
            for tp in self.backfill_tps
        ]
        offsets = {tp: (await future).offset for tp, future in zip(self.backfill_tps, sent, strict=True)}
        deadline = time.monotonic() + self.settings.backfill_worker_wait_s
        while True:
            applied = await applied_offsets(self.clients.admin, self.settings.app_id, self.backfill_tps)
            if all(applied[tp] > offsets[tp] for tp in self.backfill_tps):
                return
            if time.monotonic() > deadline:
                behind = sorted(tp.partition for tp in self.backfill_tps if applied[tp] <= offsets[tp])
                raise UsageError(
                    f"the workers of group {self.settings.app_id!r} have not taken up the {marker} markers of "
                    f"partitions {behind} within {self.settings.backfill_worker_wait_s:g} s (is a worker running?); "
                    "run the same command again to resume"
                )
            self.report(status)
            await asyncio.sleep(MARKER_POLL_S)

    async def _copy(self, status: BackfillStatus) -> None:
        producer = self.clients.producer
        by_position = {plan.position(tp): tp for tp in self.sources}
        start = {by_position[k]: p.copied for k, p in status.positions.items() if k in by_position}
        stop = {by_position[k]: p.stop for k, p in status.positions.items() if k in by_position}
        pending: list[asyncio.Future] = []
        copied = dict(start)
        last_saved = time.monotonic()
        run_id = status.run_id
        async for tp, message in merged(self.clients.consumer, start, stop, self.topic_order):
            headers = source_headers(self.milestone_id, run_id, f"{tp.topic}/{tp.partition}/{message.offset}")
            pending.append(
                await producer.send(
                    self.backfill_topic,
                    message.value,
                    key=message.key,
                    partition=tp.partition,
                    timestamp_ms=message.timestamp,
                    headers=headers,
                )
            )
            copied[tp] = message.offset + 1
            if len(pending) >= self.settings.backfill_batch_records or time.monotonic() - last_saved > 2:
                await self._checkpoint(status, pending, copied, by_position)
                pending = []
                last_saved = time.monotonic()
        for tp in self.sources:  # past the end, as far as copying goes (trailing control records included)
            progress = status.positions[plan.position(tp)]
            copied[tp] = progress.stop
        await self._checkpoint(status, pending, copied, by_position)

    async def _checkpoint(
        self,
        status: BackfillStatus,
        pending: list[asyncio.Future],
        copied: dict[TopicPartition, int],
        by_position: dict[str, TopicPartition],
    ) -> None:
        """Once the copies so far are acknowledged, record how far they go."""
        if pending:
            await asyncio.gather(*pending)
        for key, progress in status.positions.items():
            if key in by_position:
                progress.copied = copied.get(by_position[key], progress.copied)
        status.records_copied = sum(p.copied - p.start for p in status.positions.values())
        await self._save(status)
