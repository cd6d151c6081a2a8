"""Starting the runtime's Kafka clients while the broker may be briefly away.

A worker that restarts (after a failure, or with the broker) may find the
broker still down: it waits for it, up to ``MILESTREAM_DELIVERY_TIMEOUT``,
rather than exiting at once and restarting in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

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
