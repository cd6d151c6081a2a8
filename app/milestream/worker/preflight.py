"""Checks before a worker starts, so a misconfiguration is one clear line instead of a Faust traceback."""

from __future__ import annotations

import asyncio

from ..kafka_client import KafkaUnreachable, client_options, refused_settings
from ..runtime.clients import started
from ..settings import Settings
from .web import UnsafeWebBind, check_bind


def startup_problem(settings: Settings) -> str | None:
    """What stops this worker from starting safely (an exposed HTTP server, refused Kafka settings), if anything."""
    try:
        check_bind(settings)
    except UnsafeWebBind as exc:
        return str(exc)
    return asyncio.run(refused_settings(settings))


def broker_unreachable(settings: Settings) -> str | None:
    """Why the broker cannot be reached after waiting up to ``MILESTREAM_DELIVERY_TIMEOUT``, or None.

    A worker restarted while the broker is away (it exited to restart from its last commit) waits
    here rather than failing inside Faust's start-up, which the supervisor would not retry."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def wait() -> str | None:
        try:
            admin = await started(
                lambda: AIOKafkaAdminClient(**client_options(settings), client_id="milestream-preflight"),
                settings,
                "waiting for the broker",
            )
        except KafkaUnreachable as exc:
            return str(exc)
        await admin.close()
        return None

    return asyncio.run(wait())
