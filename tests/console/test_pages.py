"""The console in-process: its pages over the API's handlers (aiohttp test server, memory state)."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient, TestServer

from milestream.api.server import aiohttp_app
from milestream.console import aiohttp_console
from milestream.console.client import ApiClient
from milestream.console.html import h
from milestream.console.pages import progress_bar
from milestream.settings import Settings
from milestream.worker.web import CONSOLE_COOKIE
from tests.api.support import TOKEN, Cluster, publisher
from tests.factories import at, monthly_gross_definition, transaction

JAN = "2024-01-05T10:00:00+05:30"
HOSTILE_CUSTOMER = "<script>alert('c')</script>"
HOSTILE_NAME = "<script>alert('m')</script> spend"


def clock():
    return at("2024-01-20T12:00:00+05:30")


def loaded(settings: Settings | None = None) -> Cluster:
    cluster = Cluster(settings)
    definition = monthly_gross_definition("m-console", name=HOSTILE_NAME, settings={"leaderboard": True})
    definition["group"]["targets"][0]["sub_targets"] = [{"name": "Half", "criterion": "percentage", "value": 50}]
    cluster.pipe("definitions", "m-console", definition, at(JAN))
    for n, (customer, amount) in enumerate([(HOSTILE_CUSTOMER, "1500"), ("c2", "6000")]):
        cluster.pipe("transactions", customer, transaction(customer, amount, JAN, n), at(JAN))
    return cluster


async def _session(cluster: Cluster, steps: list[tuple[str, str, Any, bool]]) -> list[tuple[int, dict, str]]:
    client = ApiClient(cluster.settings, base_url="http://unset")
    application = aiohttp_app(cluster.settings, cluster.topology, cluster.single(), publisher(), clock=clock)
    aiohttp_console(cluster.settings, cluster.topology, client, application)
    out = []
    async with TestClient(TestServer(application)) as http:
        client.base_url = str(http.make_url("")).rstrip("/")
        for method, path, form, follow in steps:
            response = await http.request(method, path, data=form, allow_redirects=follow)
            out.append((response.status, dict(response.headers), await response.text()))
        await client.close()
    return out


def session(cluster: Cluster, *steps: tuple[str, str, Any, bool]) -> list[tuple[int, dict, str]]:
    return asyncio.run(_session(cluster, list(steps)))


def login() -> tuple[str, str, Any, bool]:
    return ("POST", "/console/login", {"token": TOKEN}, False)


def test_console_pages_need_the_token_and_the_cookie_counts_for_console_pages_only():
    cluster = loaded()
    (before, wrong, ok, page, api, definitions, out, after) = session(
        cluster,
        ("GET", "/console", None, False),
        ("POST", "/console/login", {"token": "nope"}, False),
        login(),
        ("GET", "/console", None, False),
        ("GET", "/customers/c2/milestones", None, False),
        ("GET", "/definitions", None, False),
        ("POST", "/console/logout", None, False),
        ("GET", "/console/operations", None, False),
    )
    assert before[0] == 303 and before[1]["Location"] == "/console/login"
    assert wrong[0] == 401 and "wrong token" in wrong[2]
    assert ok[0] == 303
    cookie = ok[1]["Set-Cookie"]
    assert cookie.startswith(f"{CONSOLE_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert page[0] == 200 and "m-console" in page[2]
    assert (
        "script-src" not in page[1]["Content-Security-Policy"]
        and "default-src 'none'" in page[1]["Content-Security-Policy"]
    )
    assert api[0] == 401  # the cookie is not a bearer token for the API
    assert definitions[0] in (401, 404)
    assert out[0] == 303 and after[0] == 303


def test_hostile_names_and_customer_ids_are_shown_as_text():
    cluster = loaded()
    _, listing, customer, board = session(
        cluster,
        login(),
        ("GET", "/console", None, True),
        ("GET", f"/console/customer?id={HOSTILE_CUSTOMER}", None, True),
        ("GET", "/console/leaderboards?milestone=m-console&top=5", None, True),
    )
    for status, _, text in (listing, customer, board):
        assert status == 200
        assert "<script" not in text.lower()
    assert h(HOSTILE_NAME) in listing[2]
    assert h(HOSTILE_CUSTOMER) in customer[2] and h(HOSTILE_CUSTOMER) in board[2]
    # The progress bar: 1500 of 5000, the 50 % sub-target marked at 50 %.
    assert re.search(r'data-achieved="1500(\.0*)?"', customer[2])
    assert 'style="left:50.00%"' in customer[2] and 'style="width:30.00%"' in customer[2]
    assert "Why progress changed" in customer[2] and "txn-" in customer[2]


def test_an_invalid_definition_shows_the_api_reasons_and_a_valid_one_is_accepted():
    cluster = loaded()
    good = monthly_gross_definition("m-new")
    bad = monthly_gross_definition("m-bad", ends_at="2023-01-01T00:00:00+05:30")
    del bad["group"]["targets"][0]["kpi"]
    import orjson

    _, refused, not_json, accepted, deactivated, cloned, bad_clone = session(
        cluster,
        login(),
        ("POST", "/console/edit", {"milestone_id": "m-bad", "definition": orjson.dumps(bad).decode()}, True),
        ("POST", "/console/edit", {"milestone_id": "m-bad", "definition": "{not json"}, True),
        ("POST", "/console/edit", {"milestone_id": "", "definition": orjson.dumps(good).decode()}, True),
        ("POST", "/console/status", {"milestone_id": "m-console", "active": "false"}, True),
        ("POST", "/console/clone", {"source": "m-console", "milestone_id": "m-copy", "name": "Copy"}, True),
        ("POST", "/console/clone", {"source": "m-console", "milestone_id": "m-copy", "name": "", "changes": "{"}, True),
    )
    assert refused[0] == 200 and 'id="definition-errors"' in refused[2] and "kpi" in refused[2]
    assert 'id="errors"' in refused[2]
    assert "not JSON" in not_json[2]
    assert 'id="notice"' in accepted[2] and "Accepted: m-new" in accepted[2]
    assert "the deactivation of m-console is on the definitions topic" in deactivated[2]
    assert "the clone m-copy of m-console" in cloned[2]
    assert "changes: not JSON" in bad_clone[2]


def test_without_a_token_there_is_no_login():
    cluster = loaded(Settings())
    (page, login_page) = session(cluster, ("GET", "/console", None, False), ("GET", "/console/login", None, False))
    assert page[0] == 200 and "Log out" not in page[2]
    assert login_page[0] == 303 and login_page[1]["Location"] == "/console"


def test_progress_bar_without_a_target_value_shows_the_value_only():
    html = progress_bar({"target_id": "t", "name": "x", "kpi": "count", "achieved": "3", "defined": None})
    assert 'class="bar"' not in html and ">3<" in html


def test_customer_ids_with_url_characters_reach_the_api_whole():
    cluster = Cluster()
    cluster.pipe("definitions", "m-x", monthly_gross_definition("m-x"), at(JAN))
    ids = ["a/b", "50%off", "x?y=1&z", "é ü"]
    for n, cid in enumerate(ids):
        cluster.pipe("transactions", cid, transaction(cid, "100", JAN, n), at(JAN))
    pages = session(cluster, login(), *[("GET", "/console/customer?" + urlencode({"id": c}), None, True) for c in ids])
    for cid, (status, _, text) in zip(ids, pages[1:]):
        assert status == 200 and re.search(r'data-achieved="100(\.0*)?"', text), cid
        assert f"Customer {h(cid)}" in text
