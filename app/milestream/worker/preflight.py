"""Checks before a worker starts, so a misconfiguration is one clear line instead of a Faust traceback."""

from __future__ import annotations

import asyncio

from ..kafka_client import refused_settings
from ..settings import Settings
from .web import UnsafeWebBind, check_bind


def startup_problem(settings: Settings) -> str | None:
    """What stops this worker from starting safely (an exposed HTTP server, refused Kafka settings), if anything."""
    try:
        check_bind(settings)
    except UnsafeWebBind as exc:
        return str(exc)
    return asyncio.run(refused_settings(settings))
