"""The status of a backfill run, kept on the compacted ``backfills`` topic (one record per milestone)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from .base import Id, OutputTimestamp, StrictModel, Text


class PositionProgress(StrictModel):
    """One input partition's part of a run: offsets ``start`` (inclusive) to ``stop`` (exclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=False)  # advanced in place as the run goes

    start: int = Field(ge=0)
    stop: int = Field(ge=0)
    copied: int = Field(ge=0)  # the next offset to copy


class BackfillStatus(StrictModel):
    """Where a backfill run stands: written by ``milestream backfill`` at every checkpoint.

    ``state``: ``starting`` (start markers sent, waiting for the workers), ``copying``,
    ``applying`` (everything copied and the end markers sent; the workers are applying
    what is left), ``done``. A run that stopped half-way keeps its last state and resumes
    from ``positions`` when started again."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    type: Literal["backfill_status"] = "backfill_status"
    schema_version: Literal[1] = 1
    milestone_id: Id
    run_id: Id
    state: Literal["starting", "copying", "applying", "done"]
    from_time: OutputTimestamp  # the milestone's start less its buffer days: what the run reads from
    positions: dict[Text, PositionProgress] = Field(default_factory=dict)  # by "topic/partition"
    records_total: int = Field(ge=0)
    records_copied: int = Field(ge=0)
    started_at: OutputTimestamp
    updated_at: OutputTimestamp
    finished_at: OutputTimestamp | None = None
