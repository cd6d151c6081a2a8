"""Each request's time by route (api/timing.py), through the worker's middlewares on aiohttp."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from milestream import metrics
from milestream.settings import Settings
from milestream.worker.web import faust_web_options

TOKEN = "a-long-random-token"
ROUTE = "/customers/{customer_id}/milestones"


def _count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return metrics.REGISTRY.get_sample_value("milestream_http_request_seconds_count", labels) or 0


async def _requests(calls: list[tuple[str, str, dict[str, str]]]) -> list[int]:
    async def page(request: web.Request) -> web.Response:
        if request.match_info["customer_id"] == "slow":
            await asyncio.sleep(0.03)
        return web.json_response({})

    application = web.Application(**faust_web_options(Settings(api_token=TOKEN))["web_application_options"])
    application.router.add_get(ROUTE, page)
    async with TestClient(TestServer(application)) as client:
        statuses = []
        for method, path, headers in calls:
            response = await client.request(method, path, headers=headers)
            statuses.append(response.status)
        return statuses


def test_requests_are_timed_by_route_pattern_method_and_status():
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = {
        "ok": _count(ROUTE, "GET", "200"),
        "refused": _count(ROUTE, "GET", "401"),
        "unmatched": _count("unmatched", "GET", "404"),
        "odd": _count("unmatched", "other", "405"),
    }
    slow_sum = (
        metrics.REGISTRY.get_sample_value(
            "milestream_http_request_seconds_sum", {"route": ROUTE, "method": "GET", "status": "200"}
        )
        or 0
    )
    statuses = asyncio.run(
        _requests(
            [
                ("GET", "/customers/ann/milestones", auth),
                ("GET", "/customers/slow/milestones", auth),
                ("GET", "/customers/bob/milestones", {}),
                ("GET", "/no/such/page", auth),
                ("PROPFIND", "/customers/ann/milestones", auth),
            ]
        )
    )
    assert statuses == [200, 200, 401, 404, 405]
    assert _count(ROUTE, "GET", "200") == before["ok"] + 2  # two customers, one route: one series
    assert _count(ROUTE, "GET", "401") == before["refused"] + 1
    assert _count("unmatched", "GET", "404") == before["unmatched"] + 1
    assert _count("unmatched", "other", "405") == before["odd"] + 1  # no route has it; an unusual method
    slow_after = metrics.REGISTRY.get_sample_value(
        "milestream_http_request_seconds_sum", {"route": ROUTE, "method": "GET", "status": "200"}
    )
    assert slow_after - slow_sum >= 0.03  # seconds, the slow request's wait included
