"""Which records a backfill reads: per input partition, from the milestone's start (less its
buffer days) to the end offset when the workers took the run up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiokafka import TopicPartition

from ..engine.registry import Compiled
from ..errors import UsageError
from ..schemas.base import utc_iso
from ..schemas.definitions import Activity


def position(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


def from_time(compiled: Compiled) -> datetime:
    """Where a run starts reading: the milestone's start, less its buffer days (records of
    activity before the start can arrive up to that late)."""
    return (compiled.definition.starts_at - compiled.buffer).astimezone(timezone.utc)


def check_backfillable(compiled: Compiled) -> None:
    """A milestone that counts other milestones' achievements would need theirs backfilled too."""
    if any(t.activity == Activity.MILESTONE_ACHIEVED for t in compiled.targets):
        raise UsageError(
            f"milestone {compiled.definition.milestone_id!r} counts achievements of other milestones: "
            "backfill those, then replay everything into a new deployment (milestream replay) instead"
        )


@dataclass(frozen=True)
class Gap:
    """A partition that no longer holds records from the run's start."""

    tp: TopicPartition
    first_offset: int
    first_time: datetime | None  # of the first record it holds, if any

    def describe(self) -> str:
        held = f"holds data from {utc_iso(self.first_time)}" if self.first_time else "holds no records"
        return f"{position(self.tp)} {held} (offsets before {self.first_offset} are deleted)"


async def start_offsets(consumer: Any, tps: list[TopicPartition], start: datetime) -> dict[TopicPartition, int]:
    """The first offset at or after ``start`` per partition; ``UsageError`` naming every partition
    whose retention deleted records the run needs."""
    millis = int(start.timestamp() * 1000)
    found = await consumer.offsets_for_times(dict.fromkeys(tps, millis))
    beginnings = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    offsets: dict[TopicPartition, int] = {}
    gaps = []
    for tp in tps:
        hit = found.get(tp)
        offsets[tp] = hit.offset if hit is not None else ends[tp]
        # The first retained record is already at or after the start and some before it are
        # gone: they may have been after the start too.
        if beginnings[tp] > 0 and offsets[tp] == beginnings[tp]:
            first = datetime.fromtimestamp(hit.timestamp / 1000, tz=timezone.utc) if hit is not None else None
            gaps.append(Gap(tp, beginnings[tp], first))
    if gaps:
        raise UsageError(
            f"the topics no longer hold every record from {utc_iso(start)} on: "
            + "; ".join(g.describe() for g in gaps)
            + " (a backfill would be partial; nothing was copied)"
        )
    return offsets
