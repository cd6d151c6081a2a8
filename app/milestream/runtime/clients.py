"""Starting the runtime's Kafka clients while the broker may be briefly away.

A worker that restarts (after a failure, or with the broker) may find the
broker still down: it waits for it, up to ``MILESTREAM_DELIVERY_TIMEOUT``,
rather than exiting at once and restarting in a loop.

The batch consumer's fetcher is also told to wait for the processor
(:func:`fetch_only_after_reads`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..kafka_client import KafkaUnreachable, start_client
from ..settings import Settings

log = logging.getLogger("milestream.runtime")

Client = TypeVar("Client")


async def started(factory: Callable[[], Client], settings: Settings, what: str) -> Client:
    """A client from ``factory``, started; a new one per attempt while the broker is unreachable."""
    deadline = time.monotonic() + settings.delivery_timeout_s
    pause = 0.5
    while True:
        client = factory()
        try:
            await start_client(client, settings)
            return client
        except KafkaUnreachable as exc:
            stop = getattr(client, "stop", None) or client.close  # type: ignore[attr-defined]
            await stop()
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s: %s; trying again in %.1f s", what, exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


UNREAD_RECORDS_HOLD_S = 2.0


def fetch_only_after_reads(consumer: Any, hold_s: float = UNREAD_RECORDS_HOLD_S) -> None:
    """Make a started aiokafka consumer fetch from a broker again only once the records it fetched from
    it were read (``getmany``), or after ``hold_s``.

    aiokafka's fetcher waits for fetched records to be read for 100 ms only (its ``prefetch_backoff``,
    which the consumer does not expose). After that it fetches the broker's *other* partitions alone,
    and when those are idle (a worker reads ten topics, most of them quiet) the broker holds that fetch
    for ``MILESTREAM_FETCH_MAX_WAIT_MS`` (500 ms), during which nothing else can be fetched from it:
    the busy partitions' records waited up to half a second whenever a batch and its checkpoint took
    more than 100 ms (BENCHMARKS.md, "a fetch that held the worker's input"). The processor reads again after every
    batch and checkpoint, so the fetcher waits for that, up to ``hold_s``.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_prefetch_backoff"):
        raise RuntimeError("this aiokafka's consumer has no fetcher with a prefetch backoff (started? version?)")
    fetcher._prefetch_backoff = hold_s
