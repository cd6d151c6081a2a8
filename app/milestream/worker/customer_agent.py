"""The customer agent: every customer-keyed input topic (and the close ticks) through the topology.

Acknowledgement is manual and in order (``stream.noack()``): an input is acked,
and so can be committed, only once the broker has acknowledged its state write
(changelog) and every output it produced (docs/guarantees.md).

When something other than the input is at fault, nothing past the input is
acked and the worker does not wait silently:

* processing raises a bug-like error: the same record is retried, with a
  growing pause; after ``max_processing_attempts`` failures it is a poison
  record, dead-lettered as ``processing_error`` (pipeline/attempts.py);
* processing raises an infrastructure error, or the broker fails (or does not
  acknowledge within ``delivery_timeout_s``) a send of an output or of a
  changelog write: the worker logs why and exits with status
  :data:`WORKER_FAILED_EXIT_CODE`. No offset past the failed input has been
  committed, so the restarted worker (systemd, Kubernetes, docker-compose's
  ``restart: unless-stopped``) reads it again from the last commit. Faust's own
  reaction, restarting the agent in the same process, would go on with the
  records already fetched after the failed one and commit over it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import faust

from ..pipeline.attempts import InfrastructureFailure, ProcessingAttempts, RetryLater, describe
from ..pipeline.topology import Processed, Record, Topology
from ..settings import Settings
from . import metrics

log = logging.getLogger("milestream.worker")

# EX_TEMPFAIL: a temporary failure; running the worker again is the remedy.
WORKER_FAILED_EXIT_CODE = 75
RETRY_PAUSE_CAP_S = 5.0

Send = tuple[str, asyncio.Future]  # (topic, delivery future)


class DeliveryFailed(Exception):
    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"sending to {topic} failed: {reason}")
        self.topic = topic


async def send_outputs(outputs: dict[str, faust.TopicT], processed: Processed) -> list[Send]:
    """Send what processing produced now; return each send's topic and delivery future."""
    sends = []
    for out in processed.records:
        try:
            future = await outputs[out.topic].send(key=out.key, value=out.value, partition=out.partition)
        except Exception as exc:  # refused before reaching the broker (e.g. larger than the producer allows)
            raise DeliveryFailed(out.topic, describe(exc)) from exc
        sends.append((out.topic, cast(asyncio.Future, future)))  # Faust's send gives its FutureMessage
    return sends


async def deliver_now(outputs: dict[str, faust.TopicT], processed: Processed, timeout_s: float) -> None:
    """Send what processing produced and wait until the broker has acknowledged all of it."""
    for topic, future in await send_outputs(outputs, processed):
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise DeliveryFailed(topic, f"no acknowledgement from the broker in {timeout_s:g} s") from None
        except Exception as exc:
            raise DeliveryFailed(topic, describe(exc)) from exc


def changelog_sends(futures: list[Any]) -> list[Send]:
    return [(future.message.channel.get_topic_name(), future) for future in futures]


@dataclass
class _Pending:
    event: Any
    sends: list[Send]
    since: float


class AckQueue:
    """Acks events oldest first, once the broker has acknowledged all their sends.

    Raises :class:`DeliveryFailed` if the oldest event's send failed or has
    waited longer than ``timeout_s``: that event and every later one stay
    unacknowledged, so their offsets are never committed.
    """

    def __init__(
        self, ack: Callable[[Any], Awaitable[Any]], timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ack = ack
        self.timeout_s = timeout_s
        self._clock = clock
        self.pending: deque[_Pending] = deque()

    def add(self, event: Any, sends: list[Send]) -> None:
        self.pending.append(_Pending(event, sends, self._clock()))

    async def ack_delivered(self) -> None:
        while self.pending:
            head = self.pending[0]
            for topic, future in head.sends:
                if future.done():
                    if future.cancelled():
                        raise DeliveryFailed(topic, "the send was cancelled")
                    if future.exception() is not None:
                        raise DeliveryFailed(topic, describe(future.exception()))  # type: ignore[arg-type]
            waiting = [topic for topic, future in head.sends if not future.done()]
            if waiting:
                if self._clock() - head.since > self.timeout_s:
                    raise DeliveryFailed(waiting[0], f"no acknowledgement from the broker in {self.timeout_s:g} s")
                return
            self.pending.popleft()
            await self._ack(head.event)


def exit_worker(exc: BaseException) -> NoReturn:
    """Stop at once, without committing: the next start reads again from the last commit."""
    if isinstance(exc, DeliveryFailed):
        metrics.OUTPUT_SEND_FAILURES.labels(exc.topic).inc()
    log.critical(
        "%s; exiting (status %d) to restart from the last committed offsets",
        exc,
        WORKER_FAILED_EXIT_CODE,
        exc_info=exc.__cause__ or exc,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(WORKER_FAILED_EXIT_CODE)


def add_customer_agent(
    app: faust.App,
    settings: Settings,
    topology: Topology,
    store: Any,
    outputs: dict[str, faust.TopicT],
    definitions_ready: asyncio.Event,
    to_record: Callable[[Any], Record],
    observe: Callable[[Processed, str], None],
    on_failure: Callable[[BaseException], NoReturn] = exit_worker,
) -> Any:
    """Register the ``customer_events`` agent on ``app``."""
    attempts = ProcessingAttempts(settings.max_processing_attempts)
    source = app.topic(
        *topology.partitioned_topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def process(record: Record) -> Processed:
        """Process one record, retrying it in place while processing raises (pipeline/attempts.py)."""
        while True:
            started = time.perf_counter()
            try:
                processed = attempts.process(topology, record, store)
            except RetryLater as exc:
                metrics.PROCESSING_FAILURES.labels("error").inc()
                log.error("%s; retrying it", exc, exc_info=exc.__cause__)
                await asyncio.sleep(min(0.1 * 2 ** (exc.attempt - 1), RETRY_PAUSE_CAP_S))
                continue
            except InfrastructureFailure:
                metrics.PROCESSING_FAILURES.labels("infrastructure").inc()
                raise
            metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
            if processed.poison:
                metrics.POISON_RECORDS.inc()
                log.error(
                    "poison record %s dead-lettered after %d failed attempts", record.source, attempts.max_attempts
                )
            return processed

    @app.agent(source, name="customer_events")
    async def customer_events(stream: Any) -> None:
        await definitions_ready.wait()
        stream = stream.noack()
        acks = AckQueue(stream.ack, settings.delivery_timeout_s)

        async def ack_in_background() -> None:
            try:
                while True:
                    await asyncio.sleep(0.05)
                    await acks.ack_delivered()
            except Exception as exc:
                on_failure(exc)

        acker = asyncio.ensure_future(ack_in_background())
        try:
            async for event in stream.events():
                record = to_record(event.message)
                processed = await process(record)
                observe(processed, record.topic)
                sends = await send_outputs(outputs, processed)
                acks.add(event, sends + changelog_sends(store.take_changelog_futures()))
                await acks.ack_delivered()
        except Exception as exc:  # Faust would restart the agent past the unacked records: exit instead
            on_failure(exc)
        finally:
            acker.cancel()

    return customer_events
