"""The Faust worker: the topology on a real broker.

* ``customer_events``: one agent over every customer-keyed input topic (they
  are co-partitioned), state in the ``customer-state`` table (RocksDB via
  rocksdict), outputs to promotions / late-events / dead-letters.
* ``follow_definitions``: every worker reads the whole definitions topic into
  its own registry (Faust's GlobalTable is unreliable across workers), and
  customer processing waits until that registry has caught up at start-up.
* ``publish_definition_outcomes``: the definitions topic in the consumer
  group, so exactly one worker publishes what applying a record produced (a
  dead letter, or the definition resulting from a lifecycle command).

Its HTTP pages are in pages.py, who may read them in web.py.

Run it with ``milestream worker`` (or ``faust -A milestream.worker.app worker``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from ..api.faust_access import FaustStateAccess
from ..api.server import add_api
from ..kafka_client import client_options, faust_credentials
from ..pipeline.topology import PROCESSED, Processed, Topology
from ..schemas.base import utc_iso
from ..schemas.codec import dumps
from ..settings import Settings
from ..state.base import StateStore
from ..topics import STATE_TABLE, apply_topics, changelog_topics, load_topics
from . import metrics
from .customer_agent import DeliveryFailed, add_customer_agent, deliver_now, exit_worker
from .lifecycle import group_instance_id, shutdown_bounded_worker
from .pages import add_pages
from .records import record_from_aiokafka, record_from_faust
from .recovery import WorkerTableManager
from .web import check_bind, faust_web_options

log = logging.getLogger("milestream.worker")


class ChangelogTrackingTable(faust.Table):
    """A Faust table that keeps the delivery future of each changelog write.

    Faust commits an input's offset without waiting for the changelog write it
    caused; a crash in between rolls the state back on recovery while the input
    is not redelivered. The worker acks an input only once this future (and its
    outputs') are done.
    """

    def on_key_set(self, key: Any, value: Any) -> None:
        fut = self.send_changelog(self.partition_for_key(key), key, value)
        self._maybe_set_key_ttl(key, fut.message.partition)  # type: ignore[arg-type] # set by send_changelog
        self._sensor_on_set(self, key, value)
        self.changelog_futures.append(fut)

    def on_key_del(self, key: Any) -> None:
        fut = self.send_changelog(self.partition_for_key(key), key, None, value_serializer="raw")
        self._maybe_del_key_ttl(key, fut.message.partition)  # type: ignore[arg-type] # set by send_changelog
        self._sensor_on_del(self, key)
        self.changelog_futures.append(fut)

    @property
    def changelog_futures(self) -> list:
        try:
            return self._changelog_futures
        except AttributeError:
            self._changelog_futures: list = []
            return self._changelog_futures


class WorkerApp(faust.App):
    """Faust's app, creating the state table's changelog topic before anything reads it."""

    milestream_settings: Settings

    async def on_first_start(self) -> None:
        await super().on_first_start()
        settings = self.milestream_settings
        try:
            report = await asyncio.wait_for(
                apply_topics(settings, changelog_topics(settings, load_topics(settings))), timeout=15
            )
        except Exception as exc:  # the broker may be down: Faust then declares the topic itself once it is up
            log.warning("could not create the changelog topics (%s: %s)", type(exc).__name__, exc)
        else:
            for line in report:
                (log.warning if line.startswith("drift") else log.info)("changelog topic: %s", line)


class TableStore(StateStore):
    """A Faust table of raw bytes seen through the StateStore interface: the same encoded keys
    (state/keys.py) and JSON documents as every other backend."""

    def __init__(self, table: ChangelogTrackingTable) -> None:
        self.table = table

    def _get(self, raw_key: bytes) -> bytes | None:
        return self.table.get(raw_key)

    def _put(self, raw_key: bytes, raw_value: bytes) -> None:
        self.table[raw_key] = raw_value

    def _delete(self, raw_key: bytes) -> None:
        self.table.pop(raw_key, None)

    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        # The series reward-change fan-out and the lifetime-points pages scan one namespace. Faust's
        # table has no seek: it walks the active partitions' keys and this keeps the namespace's.
        return (k for k in self.table.keys() if k.startswith(prefix))

    def take_changelog_futures(self) -> list:
        """Delivery futures of the changelog writes since the last call."""
        futures = self.table.changelog_futures[:]
        self.table.changelog_futures.clear()
        return futures


def create_app(settings: Settings) -> faust.App:
    check_bind(settings)
    topics = load_topics(settings)
    partitions = topics["transactions"].partitions
    app = WorkerApp(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        store=settings.store,
        datadir=settings.data_dir,
        broker_credentials=faust_credentials(settings),
        **faust_web_options(settings),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=partitions,
        table_standby_replicas=settings.standby_replicas,
        broker_commit_interval=settings.commit_interval_s,
        # Commit on the timer only: Faust's default also commits every 10,000 acks, and
        # its stream waits for that commit, stalling processing under load.
        broker_commit_every=10**9,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        broker_max_poll_records=settings.max_poll_records,
        broker_session_timeout=settings.session_timeout_s,
        # A restarted worker takes its dead predecessor's place in the group at once (lifecycle.py).
        consumer_group_instance_id=group_instance_id(settings),
        Worker=shutdown_bounded_worker(settings.shutdown_grace_s),
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        # Resumes the input partitions only after seeking them and clearing the stream
        # buffers, so no fetched record is dropped at the end of a rebalance (recovery.py).
        TableManager=WorkerTableManager,
    )
    app.milestream_settings = settings
    topology = Topology(settings, topics)
    definitions_ready = asyncio.Event()

    def raw_topic(*names: str) -> faust.TopicT:
        return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # Every topic can be written: outputs, close-tick continuations, series reward-change commands,
    # definitions republished after a lifecycle command, enrolments of customers listed on a definition.
    outputs = {spec.name: raw_topic(spec.name) for spec in topics.values()}
    state_table = app.tables.add(
        ChangelogTrackingTable(
            app,
            name=STATE_TABLE,
            beacon=app.tables.beacon,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,  # raw bytes: the app's key/value serializers are "raw"
            options={"driver": "rocksdict"},
            help="Per-customer milestone progress (JSON documents).",
        )
    )
    store = TableStore(state_table)  # type: ignore[arg-type] # tables.add returns the table it was given

    def observe(processed: Processed, topic_name: str) -> None:
        metrics.EVENTS_CONSUMED.labels(topic_name, processed.outcome).inc()
        if processed.outcome not in PROCESSED:
            metrics.DEAD_LETTERS.labels(processed.outcome).inc()
        for event in processed.milestone_events:
            metrics.OUTPUTS_EMITTED.labels(event["kind"]).inc()
        if processed.late_events:
            metrics.LATE_EVENTS.inc(processed.late_events)

    # The agent reads Faust messages (timestamps in seconds); the definitions follower reads
    # aiokafka records (milliseconds) with record_from_aiokafka. See records.py.
    to_record = record_from_faust

    add_customer_agent(app, settings, topology, store, outputs, definitions_ready, to_record, observe)

    # Every worker applies every definitions record (follow_definitions); the one worker
    # that owns the definitions partition in the group publishes what applying it produced
    # (a dead letter, or the resulting definition after a lifecycle command).
    verdicts: dict[tuple[int, int], Processed] = {}
    followed = asyncio.Condition()
    position: dict[int, int] = {}

    @app.agent(raw_topic(topology.definitions_topic))
    async def publish_definition_outcomes(stream):
        async for event in stream.events():
            message = event.message
            async with followed:
                await followed.wait_for(
                    lambda partition=message.partition, offset=message.offset: position.get(partition, -1) > offset
                )
            processed = verdicts.pop((message.partition, message.offset), None)
            if processed is None:  # applied before this worker started: nothing left to publish
                continue
            observe(processed, message.topic)
            try:  # rare: wait, so the ack implies the output is durable
                await deliver_now(outputs, processed, settings.delivery_timeout_s)
            except DeliveryFailed as exc:
                exit_worker(exc)

    async def read_definitions() -> None:
        """Read the whole definitions topic into this worker's registry, then follow it."""
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            enable_auto_commit=False,
            client_id=f"{settings.app_id}-definitions",
        )
        await consumer.start()
        try:
            while topology.definitions_topic not in await consumer.topics():
                log.warning("definitions topic %s not found yet", topology.definitions_topic)
                await asyncio.sleep(1)
            assigned = [TopicPartition(topology.definitions_topic, p) for p in range(topics["definitions"].partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            end = await consumer.end_offsets(assigned)
            while True:
                if not definitions_ready.is_set():
                    positions = [await consumer.position(tp) for tp in assigned]
                    if all(pos >= end[tp] for pos, tp in zip(positions, assigned)):
                        log.info("definitions loaded: %d milestones", len(topology.registry.milestones))
                        definitions_ready.set()
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for messages in batches.values():
                    for message in messages:
                        record = record_from_aiokafka(message)
                        processed = topology.process_definition(record)
                        verdicts[(message.partition, message.offset)] = processed
                        if processed.outcome not in PROCESSED:
                            log.warning("definition %s rejected: %s", record.source, processed.outcome)
                    async with followed:
                        position[messages[-1].partition] = messages[-1].offset + 1
                        followed.notify_all()
                while len(verdicts) > 10_000:  # bound memory if this worker is not the publisher
                    verdicts.pop(next(iter(verdicts)))
                metrics.DEFINITIONS_LOADED.set(len(topology.registry.milestones))
        finally:
            await consumer.stop()

    @app.task
    async def follow_definitions() -> None:
        # Faust reports a failed task only as "cancelled": log the cause and retry.
        while True:
            try:
                await read_definitions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading definitions failed; retrying in 2 s")
                await asyncio.sleep(2)

    @app.timer(interval=settings.close_tick_interval_s)
    async def send_close_ticks() -> None:
        """Ask each partition this worker owns to close what is due now (pipeline/close_index.py)."""
        if not definitions_ready.is_set():
            return
        tick = dumps({"type": "close_tick", "schema_version": 1, "now": utc_iso(datetime.now(timezone.utc))})
        try:
            for tp in sorted(app.assignor.assigned_actives()):
                if tp.topic == topology.ticks_topic:
                    await outputs[topology.ticks_topic].send(key=None, value=tick, partition=tp.partition)
        except Exception:  # the next tick retries; a timer that raises would stop for good
            log.exception("sending close ticks failed")

    add_pages(app, settings, topology, store, definitions_ready)
    add_api(
        app,
        settings,
        topology,
        FaustStateAccess(app, state_table, topology.customer_topics[0], partitions),
        definitions_ready,
    )
    return app


app = create_app(Settings.from_env())
