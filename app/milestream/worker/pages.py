"""The worker's HTTP pages (who may read them: web.py).

* ``/metrics`` (Prometheus) and ``/healthz``: open;
* ``/definitions``, the series pages (series.py): bearer token when one is set;
* ``/debug/tasks``: only with ``MILESTREAM_DEBUG_PAGES=true``.
"""

from __future__ import annotations

import asyncio
import io
import traceback
from datetime import datetime, timezone
from typing import Any

import faust
from prometheus_client import generate_latest

from .. import metrics
from ..engine.lifecycle import status
from ..pipeline.topology import Topology
from ..settings import Settings
from ..state.base import StateStore
from .series import add_series_pages

# Prometheus text format; aiohttp wants the charset separately, and defaults to UTF-8.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


def task_stacks() -> str:
    """Where every asyncio task of the worker is waiting: for diagnosing a stalled worker."""
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
    return out.getvalue()


def add_pages(
    app: faust.App, settings: Settings, topology: Topology, store: StateStore, definitions_ready: asyncio.Event
) -> None:
    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(metrics.REGISTRY), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.page("/healthz")
    async def health_page(web, request):
        ready = definitions_ready.is_set()
        return web.json(
            {"status": "ok" if ready else "starting", "definitions": len(topology.registry.milestones)},
            status=200 if ready else 503,
        )

    if settings.debug_pages:

        @app.page("/debug/tasks")
        async def tasks_page(web, request):
            return web.text(task_stacks())

    @app.page("/definitions")
    async def definitions_page(web, request):
        now = datetime.now(timezone.utc)
        return web.json(
            {
                mid: {"name": c.definition.name, "status": "/".join(status(c.definition, now))}
                for mid, c in sorted(topology.registry.milestones.items())
            }
        )

    add_series_pages(app, topology, store)
