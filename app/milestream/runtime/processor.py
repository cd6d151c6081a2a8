"""The batch processor: the customer-keyed topics and the close ticks, a batch at a time.

One aiokafka consumer in the worker group (``MILESTREAM_APP_ID``) reads every
customer-keyed input topic and the close-tick topic. They are co-partitioned
and the range assignor gives a worker the same partition numbers of each, so
a worker owns whole partitions: their records and their state store
(partitions.py). A batch is whatever ``getmany`` has now (at most
``MILESTREAM_MAX_POLL_RECORDS``): nothing waits to fill a batch, so batching adds
no latency at low load (``MILESTREAM_FETCH_MIN_BYTES`` and ``MILESTREAM_FETCH_MAX_WAIT_MS``
can make the broker gather more per fetch, trading latency for CPU). The consumer fetches from a
broker again once the processor has read what it fetched from it, not while a batch is still being
processed (clients.fetch_only_after_reads: otherwise a fetch of the idle topics alone could hold the
busy partitions' next records for the fetch's whole maximum wait).

Each record of a batch is processed by the topology against the overlay of its
partition's store (state/overlay.py): a customer's state is read from RocksDB
once per batch and written once, however many of their records the batch
holds. The checkpoint then makes the batch durable (checkpoint.py). Its commit waits on the broker
for most of its time, so it runs in the background while the next batches are processed, into the
next checkpoint, whose reads see the committing one's changes (``Checkpoint.over``): one commit at
a time, in order, and a checkpoint is sealed only once the one before it has committed.

Rebalances: a revocation waits for the batch in flight and the checkpoint
committing to be committed (the lock); an assignment opens and restores the new partitions' stores before any
of their records is processed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from .. import metrics
from ..kafka_client import client_options
from ..pipeline.attempts import InfrastructureFailure, ProcessingAttempts, RetryLater
from ..pipeline.topology import Processed, Record, Topology
from ..settings import Settings
from ..state.overlay import OverlayStore
from ..topics import changelog_topics
from ..worker.lifecycle import group_instance_id, group_member_id
from ..worker.records import record_from_aiokafka
from .assignor import Ownership, ownership_assignor
from .checkpoint import Checkpoint
from .clients import fetch_only_after_reads, started
from .failure import exit_worker
from .partitions import PartitionStores

log = logging.getLogger("milestream.runtime")

RETRY_PAUSE_CAP_S = 5.0
LAG_EVERY_S = 1.0


class BatchProcessor:
    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        observe: Callable[[list[tuple[Processed, str]]], None],
        on_failure: Callable[[BaseException], NoReturn] = exit_worker,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.observe = observe  # told, a slice at a time, what each record did and its topic
        self._retry_pause_s = 0.0
        self.on_failure = on_failure
        (changelog,) = changelog_topics(settings, topology.topics)
        self.stores = PartitionStores(settings, changelog, topology.topics["transactions"].partitions)
        self.attempts = ProcessingAttempts(settings.max_processing_attempts)
        self.ownership = Ownership()
        self.advertised_url = settings.advertised_url or f"http://{settings.web_host}:{settings.web_port}"
        self.lock = asyncio.Lock()  # held by a batch from processing to commit, and by rebalances
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.transactional: AIOKafkaProducer | None = None
        self._lag_at = 0.0
        self._checkpoint: Checkpoint | None = None  # the batches processed since the last commit
        # The checkpoint before it, sealed and committing while the next batches are processed.
        self._committing: tuple[Checkpoint, asyncio.Task[None]] | None = None
        self._checkpoint_due = 0.0  # monotonic time its commit is due
        self._next_offsets: dict[TopicPartition, int] = {}  # per input partition, after the last commit

    def owned_partitions(self) -> list[int]:
        return self.stores.owned()

    # ----------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        """Consume until cancelled; exit the worker on an infrastructure failure."""
        settings = self.settings
        instance = group_instance_id(settings)
        producer_options = dict(
            **client_options(settings),
            client_id=f"{settings.app_id}-batches",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # a checkpoint sends everything at once and waits: lingering would only add latency
            max_batch_size=settings.producer_max_batch_bytes,
        )
        consumer_options = dict(
            **client_options(settings),
            group_id=settings.app_id,
            group_instance_id=group_member_id(settings),
            client_id=f"{settings.app_id}-batches",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if settings.exactly_once else "read_uncommitted",
            partition_assignment_strategy=(ownership_assignor(self.advertised_url, self.ownership),),
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, settings.session_timeout_s / 3) * 1000),
            max_poll_records=settings.max_poll_records,
            fetch_min_bytes=settings.fetch_min_bytes,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        try:
            self.producer = await started(lambda: AIOKafkaProducer(**producer_options), settings, "outputs producer")
            # Stable per worker: a restarted worker fences its predecessor's unfinished transaction.
            self.transactional = await started(
                lambda: AIOKafkaProducer(**producer_options, transactional_id=f"{settings.app_id}-{instance}"),
                settings,
                "state producer",
            )
            consumer = await started(lambda: AIOKafkaConsumer(**consumer_options), settings, "consumer")
            self.consumer = consumer
            fetch_only_after_reads(consumer)
            consumer.subscribe(self.topology.partitioned_topics, listener=_Rebalance(self))
            while True:
                batches = await consumer.getmany(timeout_ms=self._poll_timeout_ms())
                async with self.lock:
                    if batches:
                        await self.process_batch(batches)
                    if self._commit_due():
                        await self.commit_in_background()
                self.stores.flush_due()  # a store's writes are on disk within a minute, idle or not
                self._report_lag()
        except asyncio.CancelledError:
            await self._commit_on_the_way_out()
            raise
        except Exception as exc:  # anything that reaches here is not the input's fault
            self.on_failure(exc)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        for client in (self.consumer, self.producer, self.transactional):
            if client is not None:
                try:
                    await client.stop()
                except Exception:  # stopping on the way out: the next start recovers from the last commit
                    log.exception("stopping a Kafka client failed")
        self.stores.close()

    async def _commit_on_the_way_out(self) -> None:
        """A worker stopping commits what it processed, so its successor does not process it again."""
        if self.lock.locked():  # stopped in the middle of a batch: the successor starts from the last commit
            try:  # but the checkpoint before it finishes, before the clients stop under it
                await asyncio.wait_for(self._committed(), self.settings.delivery_timeout_s)
            except Exception:  # on the way out: the next start recovers from the last commit
                log.exception("committing the last checkpoint on the way out failed")
            return
        if self._checkpoint is None and self._committing is None:
            return
        try:
            async with self.lock:
                await asyncio.wait_for(self.commit_pending(), self.settings.delivery_timeout_s)
        except Exception:  # on the way out: the next start recovers from the last commit
            log.exception("committing the last checkpoint on the way out failed")

    # ------------------------------------------------------------------- batches
    def _pending(self) -> Checkpoint:
        """The checkpoint the next records go into: a new one after each commit."""
        if self._checkpoint is None:
            assert self.producer is not None and self.transactional is not None and self.consumer is not None
            self._checkpoint = Checkpoint(
                self.stores,
                self.producer,
                self.transactional,
                self.consumer,
                self.settings.app_id,
                exactly_once=self.settings.exactly_once,
                delivery_timeout_s=self.settings.delivery_timeout_s,
            ).over(self._committing[0] if self._committing is not None else None)
            self._checkpoint_due = time.monotonic() + self.settings.checkpoint_interval_ms / 1000
        return self._checkpoint

    def _commit_due(self) -> bool:
        checkpoint = self._checkpoint
        return checkpoint is not None and (
            time.monotonic() >= self._checkpoint_due or checkpoint.records >= self.settings.max_poll_records
        )

    def _poll_timeout_ms(self) -> int:
        """Wait for records no longer than the pending checkpoint may wait for its commit."""
        if self._checkpoint is None:
            return 200
        return max(0, min(200, int((self._checkpoint_due - time.monotonic()) * 1000)))

    async def commit_pending(self) -> None:
        """Commit the checkpoint of the batches processed since the last commit, and wait until it
        and the one before it are committed (the lock held: a revocation, a worker stopping)."""
        await self._committed()
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is not None:
            await checkpoint.commit()
            self._next_offsets.update(checkpoint.offsets)

    async def commit_in_background(self) -> None:
        """Seal the pending checkpoint and commit it while the next batches are processed (the lock
        held). Its commit waits on the broker for most of its time (acknowledgements, the
        transaction, the offsets): processing meanwhile keeps that wait off the records that arrive
        during it. One commit at a time, in order: the one before must have returned first."""
        await self._committed()
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is None:
            return
        checkpoint.seal()
        self._committing = (checkpoint, asyncio.create_task(self._commit(checkpoint)))

    async def _commit(self, checkpoint: Checkpoint) -> None:
        try:
            await checkpoint.commit()
        except Exception as exc:  # not committed: restart from the last commit
            self.on_failure(exc)
        self._next_offsets.update(checkpoint.offsets)

    async def _committed(self) -> None:
        """Wait for the checkpoint committing in the background, if any (its failure raises here)."""
        committing = self._committing
        if committing is not None:
            await asyncio.shield(committing[1])  # a cancelled waiter must not cancel the commit half-way
            self._committing = None

    async def process_batch(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Apply a batch to the pending checkpoint's overlays and send its outputs (at-least-once);
        the checkpoint commits when its interval is over (``commit_in_background``)."""
        checkpoint = self._pending()
        # The API serves reads on this event loop, from the committed stores (never the overlay): it
        # may run between two records, so a batch hands the loop over every slice instead of holding
        # it for the whole batch (hundreds of milliseconds at a few thousand records a second). The
        # slice's outputs leave then too: a record early in a long batch (a worker catching up) does
        # not wait for the batch's end to be answered.
        slice_s = self.settings.processing_slice_ms / 1000
        clock = time.perf_counter
        until = clock() + slice_s
        # What each record did, told to the metrics once a slice (a metric's increment costs more than
        # the counting, and this runs for every record): (outcome and outputs, topic), and the time each took.
        observed: list[tuple[Processed, str]] = []
        seconds: list[float] = []
        try:
            for tp, messages in batches.items():
                if tp.partition not in self.stores:
                    continue  # revoked since it was fetched: its new owner reads it again
                overlay = checkpoint.overlay(tp.partition)
                for message in messages:
                    record = record_from_aiokafka(message)
                    started = clock()
                    processed = self._attempt(record, overlay)
                    while processed is None:  # retried in place after a pause (pipeline/attempts.py)
                        await asyncio.sleep(self._retry_pause_s)
                        started = clock()
                        processed = self._attempt(record, overlay)
                    seconds.append(clock() - started)
                    observed.append((processed, record.topic))
                    checkpoint.processed(tp, message.offset, processed.records)
                    if clock() >= until:
                        self._observe(observed, seconds)
                        observed, seconds = [], []
                        await checkpoint.send_outputs()
                        await asyncio.sleep(0)
                        until = clock() + slice_s
        finally:
            self._observe(observed, seconds)
        await checkpoint.send_outputs()

    def _observe(self, observed: list[tuple[Processed, str]], seconds: list[float]) -> None:
        if observed:
            self.observe(observed)
            metrics.PROCESSING_SECONDS.observe_many(seconds)

    def _attempt(self, record: Record, overlay: OverlayStore) -> Processed | None:
        """One attempt at a record: what it did, or None when it failed in a way worth retrying (its
        changes rolled back; the pause before the next attempt in ``_retry_pause_s``)."""
        overlay.begin()
        try:
            processed = self.attempts.process(self.topology, record, overlay)
        except RetryLater as exc:
            overlay.rollback()
            metrics.PROCESSING_FAILURES.labels("error").inc()
            log.error("%s; retrying it", exc, exc_info=exc.__cause__)
            self._retry_pause_s = min(0.1 * 2 ** (exc.attempt - 1), RETRY_PAUSE_CAP_S)
            return None
        except InfrastructureFailure:
            metrics.PROCESSING_FAILURES.labels("infrastructure").inc()
            raise
        if processed.poison:
            metrics.POISON_RECORDS.inc()
            log.error(
                "poison record %s dead-lettered after %d failed attempts", record.source, self.attempts.max_attempts
            )
        return processed

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY_S or self.consumer is None:
            return
        self._lag_at = now
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            position = self._next_offsets.get(tp)
            if position is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))
        for partition in self.stores.owned():
            keys, size = self.stores[partition].estimates()
            metrics.STATE_KEYS.labels(str(partition)).set(keys)
            metrics.STATE_BYTES.labels(str(partition)).set(size)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, processor: BatchProcessor) -> None:
        self.processor = processor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.processor.lock:  # the batch in flight finishes first, then what it left commits
            try:
                await self.processor.commit_pending()
            except Exception as exc:  # not committed: restart from the last commit
                self.processor.on_failure(exc)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        metrics.REBALANCES.inc()
        partitions = {tp.partition for tp in assigned}
        stores = self.processor.stores
        async with self.processor.lock:
            try:
                await self.processor._committed()  # its stores may be revoked next
            except Exception as exc:
                self.processor.on_failure(exc)
            stores.revoke(set(stores.owned()) - partitions)
            try:
                await stores.assign(partitions)
            except Exception as exc:  # without its state a partition cannot be processed: restart
                self.processor.on_failure(exc)
        log.info("assigned partitions %s", sorted(partitions))
