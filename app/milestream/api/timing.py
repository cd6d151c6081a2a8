"""Each HTTP request's time in the worker, by route: ``milestream_http_request_seconds``.

Outermost of the server's middlewares, so a refused token, a 404 and a forwarded request are timed
too. The time is the worker's, from the request handed to the application to its response: a
client also waits for the event loop to read the request and for the network. (Faust's own sensor
has an ``http_latency`` histogram, but it observes the time since each request *ended*, so it reads
zero.) Labels stay bounded whatever clients send: the route's pattern (or ``unmatched``), a known
method (or ``other``), the status code.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import metrics

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(request: Any) -> str:
    """The pattern of the route that matched (``/customers/{customer_id}/milestones``), not the path."""
    route = getattr(request.match_info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else UNMATCHED


def timing_middleware() -> Callable[..., Awaitable[Any]]:
    from aiohttp import web

    @web.middleware
    async def timed(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # a redirect, or an error the inner middleware let through
            status = exc.status
            raise
        finally:
            method = request.method if request.method in METHODS else "other"
            metrics.HTTP_REQUEST_SECONDS.labels(route_of(request), method, str(status)).observe(
                time.perf_counter() - started
            )

    return timed
