"""Table recovery that hands the input partitions back without dropping records.

At the end of a rebalance, Faust 0.15's ``Recovery.on_recovery_completed``
(after restoring the tables from their changelogs) does, in this order:

1. resume fetching from the input partitions,
2. seek them to their committed offsets (one OffsetFetch round trip per
   partition, so this takes a while on a loaded machine),
3. resume flow control, which *clears every stream buffer*.

Flow control is already active at step 1 (it was resumed to read the
changelogs), so records fetched during step 2 go into the agent's buffer and
are thrown away at step 3, while the consumer's position has moved past them:

* a partition with a committed offset loses the records fetched after its seek.
  Faust's commit bookkeeping tolerates a hole of exactly one offset at the head
  of the acked offsets, so one lost record is committed over (an input never
  applied: the crash test saw a customer one purchase short); a longer hole
  blocks that partition's commits for good (upstream issue
  faust-streaming/faust#596);
* a partition with no committed offset is not sought at all (aiokafka only
  seeks to offsets > 0), so every record fetched before step 3 is lost.

``InputSafeRecovery`` does the same steps in a safe order: seek while the input
partitions are still paused, then clear the buffers, then resume the inputs.
It also rewinds input partitions that have no committed offset to their first
offset, so records dropped from buffers by an earlier rebalance are read again
(with ``consumer_auto_offset_reset="earliest"``, which the worker uses; that is
where such a partition starts anyway). Re-reading is safe: each customer's
state records the offsets it has applied (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP


class InputSafeRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Same as Faust's, with the input partitions resumed last (see module docstring)."""
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
            )
            return
        await self._resume_inputs()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """The no-table path of Faust's recovery, in the same safe order."""
        await self.app.on_rebalance_complete.send()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._resume_inputs()
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_inputs(self) -> None:
        consumer = self.app.consumer
        inputs = {tp for tp in consumer.assignment() if not self._is_changelog_tp(tp)}
        if inputs:
            # 1. Position the inputs while they are paused: nothing is fetched from them yet.
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(self._seek_inputs(inputs), timeout=self.app.conf.broker_request_timeout)
        # 2. Drop whatever the buffers still hold from before the seek (those records are read again).
        self.app.flow_control.resume()
        # 3. Only now fetch from the inputs: every record fetched from here on reaches the agents.
        consumer.resume_partitions(inputs)
        self.completed.set()
        consumer.resume_flow()
        await self.app._fetcher.maybe_start()  # type: ignore[attr-defined]

    async def _seek_inputs(self, inputs: set[TP]) -> None:
        consumer: Any = self.app.consumer
        await consumer.perform_seek()
        # perform_seek records the committed offsets it found; a partition without one was not moved.
        uncommitted = sorted(tp for tp in inputs if not consumer._committed_offset.get(tp))
        if uncommitted and self.app.conf.consumer_auto_offset_reset == "earliest":
            earliest = await consumer.earliest_offsets(*uncommitted)
            for tp in uncommitted:
                await consumer.seek(tp, earliest.get(tp) or 0)


class WorkerTableManager(TableManager):
    """Faust's table manager with :class:`InputSafeRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = InputSafeRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
