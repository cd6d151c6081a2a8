"""The checkpoint: the one owner of durability for the batches of one interval.

The batches of ``MILESTREAM_CHECKPOINT_INTERVAL_MS`` (or fewer, once they hold
``MILESTREAM_MAX_POLL_RECORDS`` records) are processed against in-memory overlays
of the partitions' stores (state/overlay.py) and collect their outputs; at-least-once,
:meth:`Checkpoint.send_outputs` sends the outputs of each slice of a batch as it ends. Nothing of
it is durable until :meth:`Checkpoint.commit`, which does, in this order:

1. **Outputs** (promotions, late events, dead letters, records the worker sends
   to its own inputs) are produced and their acknowledgements awaited. They go in
   producer batches, in order per topic partition, each to the partition the
   producer's default partitioner gives its key (pipeline/partitioner.py).
2. **Changelog**: one record per key the batch changed (its last value, or a
   tombstone) to the changelog partition of the key's store, in one Kafka
   transaction, committed. The changelog is read ``read_committed``, so it
   holds a batch's state changes all or none: a crash half-way through the
   sends cannot leave a customer's state without the close-index entries or
   tick records written with it. Leaderboard entries are not sent: they are
   derived from the state records, and a restore derives them (state/keys.py
   ``in_changelog``).
3. **RocksDB**: all the changes and the changelog offset they reach, in one
   write batch per partition store.
4. **Offsets**: the batch's input offsets are committed.

Why this order (at-least-once): a crash before 2 commits leaves the
changelog without the batch, so the inputs are read again and applied again,
producing the same outputs with the same deterministic ids (a consumer that
deduplicates on ``event_id`` sees each once); nothing is lost because the
outputs were acknowledged before the state that says they were produced. A
crash after 2 but before 4 redelivers inputs the state already records (the
per-customer applied offsets): they are recognised and not applied again. The
local store is never ahead of the changelog, so restoring its tail
(partitions.py) always yields a state of whole batches.

Exactly-once (``MILESTREAM_PROCESSING_GUARANTEE=exactly_once``): 1, 2 and 4 are
one Kafka transaction (the input offsets are sent to it), then 3. A
``read_committed`` consumer of the outputs sees each exactly once; a crash
aborts the transaction and the batch is processed again from the committed
state.

Checkpoints commit one at a time, in order. While one commits, the batches after it are
processed into the next (the processor does this): :meth:`Checkpoint.seal` takes the committing
one's changes out of its overlays and :meth:`Checkpoint.over` lets the next one's reads see them
until they are in RocksDB. Nothing of the next is sent to the changelog or committed before the one
under it has finished all four steps, so the order above holds across checkpoints too.

If a send fails or is not acknowledged within ``MILESTREAM_DELIVERY_TIMEOUT``,
:class:`DeliveryFailed` is raised and nothing is committed: the worker exits to
restart from its last commit (runtime/failure.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError
from aiokafka.partitioner import DefaultPartitioner

from .. import metrics
from ..pipeline.attempts import describe
from ..pipeline.partitioner import partition_for
from ..pipeline.topology import OutRecord
from ..state.base import StateStore
from ..state.overlay import OverlayStore
from .failure import DeliveryFailed
from .partitions import CHANGELOG_OFFSET, PartitionStores

log = logging.getLogger("milestream.runtime")


class Checkpoint:
    """What the batches since the last commit changed and produced, until it is committed."""

    def __init__(
        self,
        stores: PartitionStores,
        producer: AIOKafkaProducer,
        transactional: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        group_id: str,
        *,
        exactly_once: bool,
        delivery_timeout_s: float,
    ) -> None:
        self._stores = stores
        self._producer = producer  # outputs, at-least-once
        self._transactional = transactional  # the changelog (and, exactly-once, outputs and offsets)
        self._consumer = consumer
        self._group_id = group_id
        self._exactly_once = exactly_once
        self._timeout_s = delivery_timeout_s
        self.overlays: dict[int, OverlayStore] = {}
        self.outputs: list[OutRecord] = []
        self._sent = 0  # outputs[:_sent] are sent (at-least-once), their acknowledgements in _sends
        self._sends: list[tuple[str, Any]] = []
        self._topic_partitions: dict[str, list[int]] = {}  # an output topic's partitions, sorted
        self.offsets: dict[TopicPartition, int] = {}  # next offset to read, per input partition
        self.records = 0
        # The checkpoint before this one, sealed and perhaps still committing: its changes are not in
        # the stores until its step 3, so this one's reads see them through it (``overlay``).
        self._under: Checkpoint | None = None
        self._sealed: dict[int, tuple[dict[bytes, bytes | None], set[bytes]]] | None = None

    def over(self, previous: Checkpoint | None) -> Checkpoint:
        """Read through ``previous`` (sealed, its commit not necessarily written yet); self."""
        self._under = previous
        return self

    def overlay(self, partition: int) -> OverlayStore:
        overlay = self.overlays.get(partition)
        if overlay is None:
            base: StateStore = self._stores[partition]
            if self._under is not None:
                base = self._under.layer(partition, base)
            overlay = self.overlays[partition] = OverlayStore(base)
        return overlay

    def seal(self) -> None:
        """Take no more records: their changes move out of the overlays, to be committed. The next
        checkpoint may then process records over this one (``over``) while this one commits; it must
        not be sealed before this one's commit has returned (``_under`` is let go here)."""
        if self._sealed is None:
            self._sealed = {partition: overlay.take_changes() for partition, overlay in self.overlays.items()}
            self.overlays = {}
            self._under = None

    def layer(self, partition: int, base: StateStore) -> StateStore:
        """``base`` with this sealed checkpoint's changes on top (read only)."""
        assert self._sealed is not None, "only a sealed checkpoint is read through"
        sealed = self._sealed.get(partition)
        if not sealed or not sealed[0]:
            return base
        layer = OverlayStore(base)
        layer.changes = sealed[0]  # never written to: the next checkpoint's overlay takes its writes
        return layer

    def processed(self, tp: TopicPartition, offset: int, outputs: list[OutRecord]) -> None:
        self.outputs += outputs
        self.offsets[tp] = offset + 1
        self.records += 1

    @property
    def empty(self) -> bool:
        return not self.offsets

    async def send_outputs(self) -> None:
        """At-least-once: send the outputs collected so far now, without waiting for the broker;
        ``commit`` waits for their acknowledgements first (step 1). A checkpoint spans several
        batches, and a long batch several processing slices: this lets outputs leave as their slice
        ends. Exactly-once: nothing (the outputs are part of the checkpoint's transaction)."""
        if self._exactly_once or self._sent == len(self.outputs):
            return
        outputs, self._sent = self.outputs[self._sent :], len(self.outputs)
        self._sends += await self._send_outputs(self._producer, outputs)

    async def commit(self) -> None:
        self.seal()
        if self.empty:
            return
        started = time.perf_counter()
        assert self._sealed is not None
        changes, changelog = {}, {}
        for partition, (partition_changes, local) in self._sealed.items():
            changes[partition] = partition_changes
            changelog[partition] = _without(partition_changes, local)
        if not self._exactly_once:
            await self.send_outputs()
            await self._acknowledged(self._sends)
        reached = await self._commit_transaction(changelog)
        for partition, partition_changes in changes.items():
            if partition in reached:
                self._stores[partition].write(partition_changes, {CHANGELOG_OFFSET: str(reached[partition]).encode()})
            elif partition_changes:  # local keys alone (derived ones; the state they follow did not change)
                self._stores[partition].write(partition_changes)
        if not self._exactly_once:
            await self._commit_offsets()
        metrics.BATCH_RECORDS.observe(self.records)
        metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)

    # ------------------------------------------------------------------ steps
    async def _send_outputs(self, producer: AIOKafkaProducer, outputs: list[OutRecord]) -> list[tuple[str, Any]]:
        """Send outputs in producer batches, one series per topic partition in the order they were
        produced (the partition the producer's default partitioner gives a key, as a send would);
        (topic, delivery future) of each batch."""
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        for out in outputs:
            partition = out.partition
            if partition is None:
                partitions = await self._partitions(producer, out.topic)
                key = out.key
                partition = _PARTITIONER(key, partitions, None) if key is None else partition_for(key, partitions)
            groups.setdefault((out.topic, partition), []).append((out.key, out.value))
        return [(topic, future) for topic, _, _, future in await _send_batches(producer, groups)]

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        partitions = self._topic_partitions.get(topic)
        if partitions is None:
            try:
                known = await producer.partitions_for(topic)
            except Exception as exc:  # the topic is missing, or the broker does not answer
                raise DeliveryFailed(topic, describe(exc)) from exc
            partitions = self._topic_partitions[topic] = sorted(known)
        return partitions

    async def _acknowledged(self, pending: list[tuple[str, Any]]) -> list[Any]:
        """The acknowledgements of the sends, in order: all within the delivery timeout, waited for
        together (most have arrived by the commit: one ``wait_for`` per send cost more than the send)."""
        waiting = [future for _, future in pending if not future.done()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=self._timeout_s)
            if late:
                topic = next(topic for topic, future in pending if future in late)
                raise DeliveryFailed(topic, f"no acknowledgement from the broker in {self._timeout_s:g} s")
        results = []
        for topic, future in pending:
            try:
                results.append(future.result())
            except Exception as exc:
                raise DeliveryFailed(topic, describe(exc)) from exc
        return results

    async def _send_changelog(self, changes: dict[int, dict[bytes, bytes | None]]) -> dict[int, int]:
        """Send one changelog record per changed key, in whole producer batches per partition;
        per partition, the offset reached."""
        topic = self._stores.changelog_topic
        groups = {
            (topic, partition): list(partition_changes.items())
            for partition, partition_changes in changes.items()
            if partition_changes
        }
        sends = await _send_batches(self._transactional, groups)
        metas = await self._acknowledged([(topic, future) for topic, _, _, future in sends])
        reached: dict[int, int] = {}
        for (_, partition, count, _), meta in zip(sends, metas, strict=True):
            reached[partition] = max(reached.get(partition, 0), meta.offset + count)  # the batch's base offset
        metrics.CHANGELOG_RECORDS.inc(sum(count for _, _, count, _ in sends))
        return reached

    async def _commit_offsets(self) -> None:
        try:
            await self._consumer.commit(self.offsets)
        except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as exc:
            # The partitions moved while the batch ran: the new owner reads these records again
            # and recognises them from the state (the changelog has it), so nothing is applied twice.
            metrics.COMMITS.labels("failed").inc()
            log.warning("offset commit failed (%s); the partitions' new owner continues from the state", exc)
        else:
            metrics.COMMITS.labels("ok").inc()

    async def _commit_transaction(self, changes: dict[int, dict[bytes, bytes | None]]) -> dict[int, int]:
        producer = self._transactional
        try:
            await producer.begin_transaction()
            if self._exactly_once:
                await self._acknowledged(await self._send_outputs(producer, self.outputs))
            reached = await self._send_changelog(changes)
            if self._exactly_once:
                await producer.send_offsets_to_transaction(self.offsets, self._group_id)
            await asyncio.wait_for(producer.commit_transaction(), self._timeout_s)
        except DeliveryFailed:
            raise
        except TimeoutError:
            raise DeliveryFailed("transaction", f"not committed within {self._timeout_s:g} s") from None
        except Exception as exc:
            raise DeliveryFailed("transaction", describe(exc)) from exc
        if self._exactly_once:
            metrics.COMMITS.labels("ok").inc()
        # The commit marker follows; a restore from here skips it (markers are written asynchronously,
        # so pointing past it could point past the changelog's end for a moment).
        return reached


def _without(changes: dict[bytes, bytes | None], local: set[bytes]) -> dict[bytes, bytes | None]:
    """``changes`` but the ``local`` keys (a copy only when there are some)."""
    if not local:
        return changes
    kept = dict(changes)
    for raw_key in local:
        del kept[raw_key]
    return kept


_PARTITIONER = DefaultPartitioner()  # the producer's own, for a record without a key (any partition)


async def _send_batches(
    producer: AIOKafkaProducer, groups: Mapping[tuple[str, int], Sequence[tuple[bytes | None, bytes | None]]]
) -> list[tuple[str, int, int, Any]]:
    """Send each topic partition's records, in order, in as few producer batches as they fit in (a
    tenth of the client's cost of one send per record); (topic, partition, records, delivery future)
    of each batch. A record the producer cannot take, or a topic it cannot send to: DeliveryFailed."""
    sends: list[tuple[str, int, int, Any]] = []
    for (topic, partition), records in groups.items():
        try:
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    sends.append(await _send_batch(producer, batch, topic, partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a record of {len(value or b'')} bytes exceeds a producer batch")
            if batch.record_count():
                sends.append(await _send_batch(producer, batch, topic, partition))
        except Exception as exc:
            raise DeliveryFailed(topic, describe(exc)) from exc
    return sends


async def _send_batch(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> tuple[str, int, int, Any]:
    return topic, partition, batch.record_count(), await producer.send_batch(batch, topic, partition=partition)
