"""The operator console: server-rendered HTML pages at ``/console`` on the worker's web server.

A client of the worker's own API (client.py): milestones and their definition editor, a customer's
progress and history, leaderboards, and operations (dead letters, late events, consumer lag).
No framework, no build step, no script: inline CSS, every value escaped (html.py). Who may see it:
worker/web.py (the API token, from a login form into an HttpOnly, SameSite=Strict cookie).
"""

from __future__ import annotations

from typing import Any

from ..pipeline.topology import Topology
from ..settings import Settings
from .client import ApiClient
from .pages import Console


def add_console(app: Any, settings: Settings, topology: Topology) -> Console:
    """Serve the console on a Faust app's web server (worker/app.py)."""
    from faust.web import View

    console = Console(settings, topology, ApiClient(settings))
    by_path: dict[str, dict[str, Any]] = {}
    for method, route, handler in console.routes():
        by_path.setdefault(route, {})[method] = handler
    for n, (route, methods) in enumerate(by_path.items()):
        namespace: dict[str, Any] = {}
        for method, handler in methods.items():

            async def call(self: Any, request: Any, _handler: Any = handler, **_: Any) -> Any:
                return await _handler(request)

            namespace[method.lower()] = call
        app.page(route, name=f"console_{n}")(type(f"ConsoleView{n}", (View,), namespace))
    return console


def aiohttp_console(settings: Settings, topology: Topology, client: ApiClient, application: Any = None) -> Any:
    """The console's routes on a plain aiohttp application (tests), with the worker's middlewares."""
    from aiohttp import web

    from ..worker.web import faust_web_options

    if application is None:
        application = web.Application(**faust_web_options(settings)["web_application_options"])
    for method, route, handler in Console(settings, topology, client).routes():
        application.router.add_route(method, route, handler)
    return application
