"""The worker: the topology on a real broker, in a Faust app.

* ``customer_batches``: the batch runtime (runtime/) over every customer-keyed
  input topic and the close ticks (they are co-partitioned), in the worker
  group ``MILESTREAM_APP_ID``, state in one RocksDB store per owned partition
  with its changelog topic, outputs to promotions / late-events / dead-letters.
  It runs below Faust's per-message streams: Faust is the application around
  it (lifecycle, web server, timers, the definitions follower).
* ``follow_definitions``: every worker reads the whole definitions topic into
  its own registry (Faust's GlobalTable is unreliable across workers), and
  customer processing waits until that registry has caught up at start-up.
* ``publish_definition_outcomes``: a Faust agent on the definitions topic, in
  the Faust app's own group (``<app id>-definitions``), so exactly one worker
  publishes what applying a record produced (a dead letter, or the definition
  resulting from a lifecycle command).

Its HTTP pages are in pages.py, who may read them in web.py.

Run it with ``milestream worker`` (or ``faust -A milestream.worker.app worker``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from .. import __version__, build, metrics
from ..api.server import add_api
from ..console import add_console
from ..kafka_client import client_options, faust_credentials
from ..pipeline.attempts import describe
from ..pipeline.topology import PROCESSED, Processed, Topology, tally
from ..runtime.failure import DeliveryFailed, exit_worker
from ..runtime.partitions import OwnedState
from ..runtime.processor import BatchProcessor
from ..schemas.base import utc_iso
from ..schemas.codec import dumps
from ..settings import Settings
from ..topics import apply_topics, load_topics, worker_topics, written_topics
from . import garbage
from .lifecycle import group_member_id, shutdown_bounded_worker
from .pages import add_pages
from .records import record_from_aiokafka
from .state_access import RuntimeStateAccess
from .web import check_bind, faust_web_options

log = logging.getLogger("milestream.worker")


class WorkerApp(faust.App):
    """Faust's app, creating the state table's changelog topic before anything reads it."""

    milestream_settings: Settings

    async def on_first_start(self) -> None:
        await super().on_first_start()
        garbage.measure_pauses()
        log.info("milestream %s, %s build", __version__, build.describe())
        settings = self.milestream_settings
        try:
            report = await asyncio.wait_for(
                apply_topics(settings, worker_topics(settings, load_topics(settings))), timeout=15
            )
        except Exception as exc:  # the broker may be down: Faust then declares the topic itself once it is up
            log.warning("could not create the worker's topics (%s: %s)", type(exc).__name__, exc)
        else:
            for line in report:
                (log.warning if line.startswith("drift") else log.info)("worker topic: %s", line)


async def deliver_now(outputs: dict[str, faust.TopicT], processed: Processed, timeout_s: float) -> None:
    """Send what processing produced and wait until the broker has acknowledged all of it."""
    for out in processed.records:
        try:
            future = await outputs[out.topic].send(key=out.key, value=out.value, partition=out.partition)
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise DeliveryFailed(out.topic, f"no acknowledgement from the broker in {timeout_s:g} s") from None
        except Exception as exc:
            raise DeliveryFailed(out.topic, describe(exc)) from exc


def create_app(settings: Settings) -> faust.App:
    check_bind(settings)
    topics = load_topics(settings)
    partitions = topics["transactions"].partitions
    app = WorkerApp(
        # The Faust app's group reads only the definitions topic (publish_definition_outcomes);
        # the customer topics are read by the batch runtime in the group named MILESTREAM_APP_ID.
        settings.definitions_group,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        datadir=settings.data_dir,
        broker_credentials=faust_credentials(settings),
        **faust_web_options(settings),
        topic_partitions=partitions,
        broker_commit_interval=settings.commit_interval_s,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        broker_session_timeout=settings.session_timeout_s,
        consumer_group_instance_id=f"{group_member_id(settings)}-definitions",
        Worker=shutdown_bounded_worker(settings.shutdown_grace_s),
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    app.milestream_settings = settings
    topology = Topology(settings, topics, keep_outbox=False)  # the checkpoint acknowledges outputs first
    definitions_ready = asyncio.Event()

    def raw_topic(*names: str) -> faust.TopicT:
        return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # Every topic can be written: outputs, close-tick continuations, series reward-change commands,
    # definitions republished after a lifecycle command, enrolments of customers listed on a definition;
    # a replay deployment writes its own topics only (topics.written_topics).
    writable = written_topics(settings, topics)
    outputs = {spec.name: raw_topic(spec.name) for spec in topics.values() if spec.name in writable}

    # A labelled counter per (topic, outcome) and per output kind, looked up once: labels() costs more
    # than the increment (outcomes and kinds are fixed sets: see pipeline/topology.py and
    # schemas/outputs.py). The records of a slice are counted first and each counter moved once.
    consumed: dict[tuple[str, str], Any] = {}
    emitted: dict[str, Any] = {}

    def observe(observed: list[tuple[Processed, str]]) -> None:
        counted = tally(observed)
        for key, count in counted.outcomes.items():
            counter = consumed.get(key)
            if counter is None:
                counter = consumed[key] = metrics.EVENTS_CONSUMED.labels(*key)
            counter.inc(count)
        for kind_name, count in counted.milestone_events.items():
            kind = emitted.get(kind_name)
            if kind is None:
                kind = emitted[kind_name] = metrics.OUTPUTS_EMITTED.labels(kind_name)
            kind.inc(count)
        for reason, count in counted.dead_letters.items():
            metrics.DEAD_LETTERS.labels(reason).inc(count)
        for run, count in counted.backfill.items():
            metrics.BACKFILL_RECORDS.labels(*run).inc(count)
        if counted.late_events:
            metrics.LATE_EVENTS.inc(counted.late_events)

    processor = BatchProcessor(settings, topology, observe)

    @app.task
    async def customer_batches() -> None:
        await definitions_ready.wait()
        garbage.freeze_startup_objects()
        await processor.run()

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
            observe([(processed, message.topic)])
            processed.records = [out for out in processed.records if out.topic in outputs]
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
            for partition in processor.owned_partitions():
                await outputs[topology.ticks_topic].send(key=None, value=tick, partition=partition)
        except Exception:  # the next tick retries; a timer that raises would stop for good
            log.exception("sending close ticks failed")

    add_pages(app, settings, topology, OwnedState(processor.stores), definitions_ready)
    add_api(app, settings, topology, RuntimeStateAccess(processor), definitions_ready)
    add_console(app, settings, topology)
    return app


app = create_app(Settings.from_env())
