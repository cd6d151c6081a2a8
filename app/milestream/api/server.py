"""Mounting the API: on the Faust worker's web server (``add_api``), or on a plain aiohttp
application (``aiohttp_app``, for tests). Both register the same ROUTES (routes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..pipeline.topology import Topology
from ..settings import Settings
from .access import Publisher, StateAccess
from .handlers import Api
from .reference import html_page
from .routes import ROUTES, openapi_text

# How soon after a partition is assigned its leaderboard counts are read (handlers.Api.mirror_counts).
COUNTS_MIRROR_INTERVAL_S = 1.0


def _handlers(api: Api) -> dict[tuple[str, str], Callable[[Any], Awaitable[Any]]]:
    from aiohttp import web

    document = openapi_text()
    page = html_page()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    async def reference(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    extra = {"openapi": openapi, "reference": reference}
    return {
        (route.method, route.path): extra.get(route.handler) or getattr(api, route.handler)
        for route in ROUTES
        if route.handler
    }


def _by_path(api: Api) -> dict[str, dict[str, Callable[[Any], Awaitable[Any]]]]:
    paths: dict[str, dict[str, Callable[[Any], Awaitable[Any]]]] = {}
    for (method, path), handler in _handlers(api).items():
        paths.setdefault(path, {})[method] = handler
    # More specific paths first: /leaderboards/customers/{id} before /leaderboards/{milestone_id}.
    return dict(sorted(paths.items(), key=lambda item: (item[0].count("{"), item[0])))


def add_api(
    app: Any,
    settings: Settings,
    topology: Topology,
    access: StateAccess,
    definitions_ready: asyncio.Event,
    publisher: Publisher | None = None,
) -> Api:
    """Serve the API on a Faust app's web server (worker/app.py)."""
    from faust.web import View

    from .faust_access import FaustPublisher

    api = Api(settings, topology, access, publisher or FaustPublisher(app))
    for n, (path, methods) in enumerate(_by_path(api).items()):
        namespace: dict[str, Any] = {}
        for method, handler in methods.items():

            async def call(self: Any, request: Any, _handler: Any = handler, **_: Any) -> Any:
                return await _handler(request)

            namespace[method.lower()] = call
        app.page(path, name=f"api_{n}")(type(f"ApiView{n}", (View,), namespace))

    @app.timer(interval=COUNTS_MIRROR_INTERVAL_S)
    async def mirror_leaderboard_counts() -> None:
        await api.mirror_counts()

    return api


def aiohttp_app(
    settings: Settings, topology: Topology, access: StateAccess, publisher: Publisher | None = None, **api_options: Any
) -> Any:
    """A plain aiohttp application serving the API with the worker's middlewares (tests)."""
    from aiohttp import web

    from ..worker.web import faust_web_options

    options = faust_web_options(settings)["web_application_options"]
    application = web.Application(**options)
    api = Api(settings, topology, access, publisher, **api_options)
    for path, methods in _by_path(api).items():
        for method, handler in methods.items():
            application.router.add_route(method, path, handler)

    async def close(_: web.Application) -> None:
        await api.close()

    application.on_cleanup.append(close)
    return application
