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

Run it with ``milestream worker`` (or ``faust -A milestream.worker.app worker``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import generate_latest

from ..engine.lifecycle import status
from ..schemas.base import utc_iso
from ..schemas.codec import dumps
from ..pipeline.topology import Processed, Topology
from ..settings import Settings
from ..state.base import StateStore, decode_state, encode_state
from ..topics import load_topics
from . import metrics
from .records import record_from_aiokafka, record_from_faust
from .recovery import WorkerTableManager

log = logging.getLogger("milestream.worker")

# Prometheus text format; aiohttp wants the charset separately, and defaults to UTF-8.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


class ChangelogTrackingTable(faust.Table):
    """A Faust table that keeps the delivery future of each changelog write.

    Faust commits an input's offset without waiting for the changelog write it
    caused; a crash in between rolls the state back on recovery while the input
    is not redelivered. The worker acks an input only once this future (and its
    outputs') are done.
    """

    def on_key_set(self, key: Any, value: Any) -> None:
        fut = self.send_changelog(self.partition_for_key(key), key, value)
        self._maybe_set_key_ttl(key, fut.message.partition)
        self._sensor_on_set(self, key, value)
        self.changelog_futures.append(fut)

    def on_key_del(self, key: Any) -> None:
        fut = self.send_changelog(self.partition_for_key(key), key, None, value_serializer="raw")
        self._maybe_del_key_ttl(key, fut.message.partition)
        self._sensor_on_del(self, key)
        self.changelog_futures.append(fut)

    @property
    def changelog_futures(self) -> list:
        try:
            return self._changelog_futures
        except AttributeError:
            self._changelog_futures: list = []
            return self._changelog_futures


class TableStore(StateStore):
    """A Faust table of JSON bytes seen through the StateStore interface."""

    def __init__(self, table: ChangelogTrackingTable) -> None:
        self.table = table

    def get(self, key: str) -> dict[str, Any] | None:
        return decode_state(self.table.get(key.encode()))

    def put(self, key: str, state: dict[str, Any]) -> None:
        self.table[key.encode()] = encode_state(state)

    def delete(self, key: str) -> None:
        self.table.pop(key.encode(), None)

    def take_changelog_futures(self) -> list:
        """Delivery futures of the changelog writes since the last call."""
        futures = self.table.changelog_futures[:]
        self.table.changelog_futures.clear()
        return futures

    def keys(self):  # the series reward-change fan-out and the lifetime-points pages scan them
        return (k.decode() for k in self.table.keys())


def create_app(settings: Settings) -> faust.App:
    topics = load_topics(settings)
    partitions = topics["transactions"].partitions
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        store=settings.store,
        datadir=settings.data_dir,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
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
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        # Resumes the input partitions only after seeking them and clearing the stream
        # buffers, so no fetched record is dropped at the end of a rebalance (recovery.py).
        TableManager=WorkerTableManager,
    )
    topology = Topology(settings, topics)
    definitions_ready = asyncio.Event()

    def raw_topic(*names: str) -> faust.TopicT:
        return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # Every topic can be written: outputs, close-tick continuations, series reward-change commands, definitions republished after a
    # lifecycle command, enrolments of customers listed on a definition.
    outputs = {spec.name: raw_topic(spec.name) for spec in topics.values()}
    state_table = app.tables.add(ChangelogTrackingTable(
        app,
        name="customer-state",
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,  # raw bytes: the app's key/value serializers are "raw"
        options={"driver": "rocksdict"},
        help="Per-customer milestone progress (JSON documents).",
    ))
    store = TableStore(state_table)

    def observe(processed: Processed, topic_name: str) -> None:
        metrics.EVENTS_CONSUMED.labels(topic_name, processed.outcome).inc()
        if processed.outcome not in ("applied", "ignored", "duplicate"):
            metrics.DEAD_LETTERS.labels(processed.outcome).inc()
        for event in processed.milestone_events:
            metrics.OUTPUTS_EMITTED.labels(event["kind"]).inc()
        if processed.late_events:
            metrics.LATE_EVENTS.inc(processed.late_events)

    async def publish(processed: Processed) -> list[asyncio.Future]:
        """Send the outputs now; return their delivery futures."""
        return [
            await outputs[out.topic].send(key=out.key, value=out.value, partition=out.partition)
            for out in processed.records
        ]

    # The agent reads Faust messages (timestamps in seconds); the definitions follower reads
    # aiokafka records (milliseconds) with record_from_aiokafka. See records.py.
    to_record = record_from_faust

    async def ack_when_delivered(stream: Any, pending: deque) -> None:
        """Ack events, oldest first, once the broker has acknowledged their state
        write (changelog) and all their outputs.

        An input's offset is committed only after it is acked, so no input is
        committed before its state and outputs are durable (docs/guarantees.md).
        """
        while pending and all(f.done() for f in pending[0][1]):
            event, futures = pending.popleft()
            for future in futures:
                if future.exception() is not None:  # the producer gave up: let Faust crash and redeliver
                    raise future.exception()
            await stream.ack(event)

    @app.agent(raw_topic(*topology.partitioned_topics))
    async def customer_events(stream):
        await definitions_ready.wait()
        pending: deque = deque()
        stream = stream.noack()

        async def ack_in_background() -> None:
            while True:
                await asyncio.sleep(0.05)
                await ack_when_delivered(stream, pending)

        acker = asyncio.ensure_future(ack_in_background())
        try:
            async for event in stream.events():
                record = to_record(event.message)
                started = time.perf_counter()
                try:
                    processed = topology.process(record, store)
                except Exception as exc:  # a bug must not stop the partition: dead-letter and go on
                    log.exception("processing %s failed", record.source)
                    processed = topology.dead_letter(record, "processing_error", f"{type(exc).__name__}: {exc}")
                metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
                observe(processed, record.topic)
                pending.append((event, await publish(processed) + store.take_changelog_futures()))
                await ack_when_delivered(stream, pending)
        finally:
            acker.cancel()

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
                await followed.wait_for(lambda: position.get(message.partition, -1) > message.offset)
            processed = verdicts.pop((message.partition, message.offset), None)
            if processed is None:  # applied before this worker started: nothing left to publish
                continue
            observe(processed, message.topic)
            for future in await publish(processed):
                await future  # rare: wait, so the ack implies the output is durable

    async def read_definitions() -> None:
        """Read the whole definitions topic into this worker's registry, then follow it."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
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
                        if processed.outcome != "applied":
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

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(metrics.REGISTRY), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.page("/healthz")
    async def health_page(web, request):
        ready = definitions_ready.is_set()
        return web.json({"status": "ok" if ready else "starting", "definitions": len(topology.registry.milestones)},
                        status=200 if ready else 503)

    @app.page("/debug/tasks")
    async def tasks_page(web, request):
        """Where every asyncio task of the worker is waiting: for diagnosing a stalled worker."""
        import io
        import traceback

        out = io.StringIO()
        for task in asyncio.all_tasks():
            out.write(f"--- {task.get_name()} {task.get_coro()!r}\n")
            # A task's stack shows only its outermost coroutine; follow what each one awaits.
            awaited: Any = task.get_coro()
            for _ in range(40):
                frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
                if frame is None:
                    out.write(f"  awaiting {awaited!r}\n")
                    break
                out.write("".join(traceback.format_stack(frame, limit=1)))
                awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
                if awaited is None:
                    break
        return web.text(out.getvalue())

    @app.page("/definitions")
    async def definitions_page(web, request):
        now = datetime.now(timezone.utc)
        return web.json(
            {
                mid: {"name": c.definition.name, "status": "/".join(status(c.definition, now))}
                for mid, c in sorted(topology.registry.milestones.items())
            }
        )

    from .series import add_series_pages

    add_series_pages(app, topology, store)
    return app


app = create_app(Settings.from_env())
