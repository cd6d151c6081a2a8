"""Who may use the worker's HTTP server.

* ``/healthz`` and ``/metrics`` are open (load balancers and Prometheus).
* Every other path needs ``Authorization: Bearer <MILESTREAM_API_TOKEN>`` when a
  token is set; the token is compared in constant time.
* The operator console (``/console``, console/) also takes the token from its
  HttpOnly, SameSite=Strict cookie, set by its login form; the cookie counts for
  console pages only, and a console page without a token redirects to the login.
* Without a token the worker serves loopback only: ``check_bind`` refuses a
  non-loopback ``MILESTREAM_WEB_HOST``, so customer data is never served to
  the network unauthenticated.
* Faust's own table and router pages are off: they would serve raw state.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from ..api.errors import install_json_protocol_errors, json_errors_middleware
from ..api.timing import timing_middleware
from ..settings import Settings

OPEN_PATHS = frozenset({"/healthz", "/metrics"})
REALM = "milestream"
CONSOLE = "/console"
CONSOLE_LOGIN = "/console/login"
CONSOLE_COOKIE = "milestream_console"


def is_console(path: str) -> bool:
    return path == CONSOLE or path.startswith(CONSOLE + "/")


class UnsafeWebBind(ValueError):
    """The HTTP server would serve a non-loopback address without a token."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost, or "" (every interface)
        return False


def check_bind(settings: Settings) -> None:
    """Raise ``UnsafeWebBind`` unless the server binds loopback or a token is set."""
    if not settings.api_token.get_secret_value() and not is_loopback(settings.web_host):
        raise UnsafeWebBind(
            f"refusing to serve HTTP on {settings.web_host or '*'}:{settings.web_port} without a token: "
            "set MILESTREAM_API_TOKEN, or MILESTREAM_WEB_HOST=127.0.0.1"
        )


def authorization_header(settings: Settings) -> dict[str, str]:
    """The header a client of the worker's pages sends (none when no token is set)."""
    token = settings.api_token.get_secret_value()
    return {"Authorization": f"Bearer {token}"} if token else {}


def token_matches(header: str, expected: str) -> bool:
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Digests first, so neither the time nor the comparison depends on the token's length.
    return hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def token_middleware(settings: Settings) -> Callable[..., Awaitable[Any]]:
    """aiohttp middleware: a 401 with a JSON reason for a missing or wrong token."""
    from aiohttp import web

    expected = settings.api_token.get_secret_value()

    @web.middleware
    async def require_token(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
        if not expected or request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if token_matches(header, expected):
            return await handler(request)
        if is_console(request.path):
            cookie = request.cookies.get(CONSOLE_COOKIE, "")
            if request.path == CONSOLE_LOGIN or (cookie and token_matches(f"Bearer {cookie}", expected)):
                return await handler(request)
            raise web.HTTPSeeOther(CONSOLE_LOGIN)
        reason = (
            "wrong bearer token" if header else "missing bearer token (Authorization: Bearer <MILESTREAM_API_TOKEN>)"
        )
        return web.json_response(
            {"error": reason},
            status=401,
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"' + (', error="invalid_token"' if header else "")},
        )

    return require_token


def faust_web_options(settings: Settings) -> dict[str, Any]:
    """``faust.App`` keyword arguments for the HTTP server (and its protocol errors as JSON)."""
    install_json_protocol_errors()
    return {
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        # Timing outermost, so every answer is timed; then errors as JSON, so a refused token, an unknown
        # path or a too-large body all answer JSON.
        "web_application_options": {
            "middlewares": [timing_middleware(), json_errors_middleware(), token_middleware(settings)],
            "client_max_size": settings.api_max_body_bytes,
        },
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
    }
