"""Who may use the worker's HTTP server (worker/web.py), in-process on aiohttp."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from milestream.settings import Settings
from milestream.worker.web import (
    UnsafeWebBind,
    authorization_header,
    check_bind,
    faust_web_options,
    is_loopback,
    token_matches,
    token_middleware,
)

TOKEN = "a-long-random-token"


async def _get(settings: Settings, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    async def page(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    application = web.Application(middlewares=[token_middleware(settings)])
    for route in ("/healthz", "/metrics", "/definitions", "/lifetime-points"):
        application.router.add_get(route, page)
    async with TestClient(TestServer(application)) as client:
        response = await client.get(path, headers=headers or {})
        return response.status, dict(response.headers), await response.text()


def get(settings: Settings, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    return asyncio.run(_get(settings, path, headers))


def test_a_page_without_or_with_a_wrong_token_is_401_with_a_json_reason():
    settings = Settings(api_token=TOKEN)
    status, headers, body = get(settings, "/definitions")
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="milestream"')
    assert headers["Content-Type"].startswith("application/json") and "missing bearer token" in body
    status, headers, body = get(settings, "/lifetime-points", {"Authorization": "Bearer nope"})
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"] and "wrong bearer token" in body
    assert get(settings, "/definitions", {"Authorization": TOKEN})[0] == 401  # no scheme
    assert get(settings, "/definitions", {"Authorization": f"Basic {TOKEN}"})[0] == 401


def test_the_right_token_opens_every_page_and_health_and_metrics_need_none():
    settings = Settings(api_token=TOKEN)
    assert get(settings, "/definitions", authorization_header(settings))[0] == 200
    assert get(settings, "/definitions", {"Authorization": f"bearer {TOKEN}"})[0] == 200
    assert get(settings, "/healthz")[0] == 200
    assert get(settings, "/metrics")[0] == 200
    assert get(settings, "/unknown")[0] == 401  # no token: not even whether a page exists


def test_without_a_token_the_pages_are_open_on_loopback():
    assert get(Settings(), "/definitions")[0] == 200
    assert authorization_header(Settings()) == {}


def test_tokens_compare_exactly():
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert not token_matches(f"Bearer {TOKEN[:-1]}", TOKEN)
    assert not token_matches(f"Bearer {TOKEN}x", TOKEN)
    assert not token_matches("Bearer ", TOKEN)
    assert not token_matches("", TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "::1", "[::1]"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_bind(Settings(web_host=host))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "worker.internal"])
def test_a_non_loopback_bind_needs_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(UnsafeWebBind, match="MILESTREAM_API_TOKEN"):
        check_bind(Settings(web_host=host))
    check_bind(Settings(web_host=host, api_token=TOKEN))


def test_faust_serves_no_raw_table_pages():
    options = faust_web_options(Settings())
    assert not any(options[f"web_{name}_enabled"] for name in ("tables", "router", "graph", "stats"))
    # Timing, errors as JSON, then the token check; and the request body limit.
    assert len(options["web_application_options"]["middlewares"]) == 3
    assert options["web_application_options"]["client_max_size"] == Settings().api_max_body_bytes


def test_the_debug_page_is_registered_only_when_enabled(tmp_path):
    from milestream.worker.app import create_app

    def paths(**values) -> set[str]:
        app = create_app(Settings(data_dir=str(tmp_path), **values))
        return set(app.web.views)

    assert "/debug/tasks" not in paths()
    assert "/debug/tasks" in paths(debug_pages=True)


def test_create_app_refuses_an_exposed_server_without_a_token(tmp_path):
    from milestream.worker.app import create_app

    with pytest.raises(UnsafeWebBind):
        create_app(Settings(data_dir=str(tmp_path), web_host="0.0.0.0"))
