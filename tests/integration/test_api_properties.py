"""Property: whatever a client sends to running workers, the API answers below 500, with a status
and a body its OpenAPI document (schemas/openapi.json) declares for that operation.

Two real `milestream worker` processes share the partitions (so requests are forwarded and
leaderboards gathered); one milestone has its leaderboard on and some customers have state.
Requests are generated from the document: every operation, its path and query parameters and
JSON bodies from the request schemas, mixed with junk (wrong types, huge values, unicode,
malformed JSON, a missing or wrong token).
"""

from __future__ import annotations

import http.client
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.worker import WorkerProcess, produce, two_workers, wait_until_balanced

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT: dict[str, Any] = json.loads((ROOT / "schemas" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
TOKEN = "property-api-token"
NOW = datetime.now(timezone.utc)
MILESTONE = "m-prop"
CUSTOMERS = [f"prop-{n}" for n in range(12)]
OPERATIONS = sorted((method, path) for path, item in DOCUMENT["paths"].items() for method in item)
OPEN = {(m, p) for m, p in OPERATIONS if DOCUMENT["paths"][p][m].get("security") == []}
EXAMPLES = 1500  # about 30 s of requests on a 2-core machine (the workers' start is on top)


# ------------------------------------------------------------------ the workers
@pytest.fixture(scope="module")
def workers(kafka_bootstrap, tmp_path_factory):
    processes = two_workers(kafka_bootstrap, tmp_path_factory.mktemp("api-properties"), api_token=TOKEN)
    first = processes[0].settings
    try:
        for process in processes:
            process.launch()
        for process in processes:
            process.wait_until_healthy()
        wait_until_balanced(processes, 8)  # no partition moving while requests are made
        definition = monthly_gross_definition(MILESTONE, **live_window(NOW), settings={"leaderboard": True})
        produce(first, [("definitions", MILESTONE, definition)])
        for process in processes:
            process.wait_for_definition(MILESTONE)
        when = (NOW - timedelta(minutes=10)).isoformat()
        produce(
            first,
            [("transactions", c, transaction(c, str(700 * (n % 5) + n), when, n)) for n, c in enumerate(CUSTOMERS)],
        )
        deadline = time.monotonic() + 60
        while not all(
            request(processes[0], "get", f"/customers/{c}/milestones/{MILESTONE}")[0] == 200 for c in CUSTOMERS
        ):
            assert time.monotonic() < deadline, "the customers' state never showed"
            time.sleep(0.5)
        yield processes
    finally:
        for process in processes:
            process.stop()


def request(
    worker: WorkerProcess, method: str, target: str, body: bytes | None = None, auth: str | None = TOKEN
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request; a fresh connection each time."""
    connection = http.client.HTTPConnection("127.0.0.1", worker.settings.web_port, timeout=20)
    headers = {"Authorization": f"Bearer {auth}"} if auth is not None else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method.upper(), target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers.get_content_type(), response.read()
    finally:
        connection.close()


# ------------------------------------------------------- values from a JSON schema
def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values a JSON schema (of the document) accepts, roughly: small, and bounded in depth."""
    if "$ref" in schema:
        return from_schema(SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]], depth + 1)
    if depth > 8:
        return st.just(None)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(option, depth + 1) for option in schema[key]])
    if "allOf" in schema:
        return from_schema(schema["allOf"][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, depth) for k in kind])
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        values = {name: from_schema(sub, depth + 1) for name, sub in properties.items()}
        fixed = st.fixed_dictionaries(
            {n: s for n, s in values.items() if n in required},
            optional={n: s for n, s in values.items() if n not in required},
        )
        patterns = schema.get("patternProperties")
        if patterns:
            pattern, sub = next(iter(patterns.items()))
            extra = st.dictionaries(st.from_regex(pattern, fullmatch=True), from_schema(sub, depth + 1), max_size=3)
            return st.tuples(fixed, extra).map(lambda both: {**both[1], **both[0]})
        return fixed
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), depth + 1), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "string":
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
        if schema.get("format") == "date":
            return st.dates().map(lambda d: d.isoformat())
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high)
        return st.text(min_size=low, max_size=max(low, high))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.one_of(st.integers(-(10**9), 10**9), st.floats(allow_nan=False, allow_infinity=False))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
JUNK_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        ["", " ", "0", "-1", "1.5", "1e400", "NaN", "null", "true", "[]", "%00", "../..", "ü✓🎉", "\u202e"]
    ),
    st.integers(-(10**40), 10**40).map(str),
    st.integers(1, 10_000).map(lambda n: "x" * n),  # past the server's 8190-byte request line, too
)
KNOWN_IDS = st.sampled_from([*CUSTOMERS[:3], MILESTONE, "spend", "group", "default", "nobody"])


def parameter_value(parameter: dict[str, Any]) -> st.SearchStrategy[str]:
    if parameter["name"] in ("customer_id", "around"):
        well_formed = st.sampled_from(CUSTOMERS)
    elif parameter["name"] == "milestone_id":
        well_formed = st.just(MILESTONE)
    elif parameter["name"] == "target":
        well_formed = st.sampled_from(["spend", "group"])
    else:
        well_formed = from_schema(parameter["schema"]).map(lambda v: v if isinstance(v, str) else json.dumps(v))
    return st.one_of(well_formed, well_formed, well_formed, KNOWN_IDS, JUNK_TEXT)


def body_value(operation: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    if "requestBody" not in operation:
        return st.none()
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    valid = from_schema(schema).map(lambda v: json.dumps(v).encode())
    wrong = st.one_of(
        JSON.map(lambda v: json.dumps(v).encode()),
        st.tuples(from_schema(schema), st.text(max_size=10), JSON).map(
            lambda t: json.dumps({**t[0], t[1]: t[2]} if isinstance(t[0], dict) else t[2]).encode()
        ),
        st.binary(max_size=200),
        st.sampled_from([b"", b"{", b"[1, 2", b'{"a": NaN}', b"\xff\xfe", b'{"a": 1e999999}']),
        st.integers(1, 3).map(lambda n: b'{"x": "' + b"y" * (n * 400_000) + b'"}'),  # over the body limit
    )
    return st.one_of(valid, valid, wrong)


# ------------------------------------------------------------------ the property
def validate(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    responses = DOCUMENT["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}, which the document does not declare"
    content = responses[str(status)]["content"]
    assert content_type in content, f"{method.upper()} {path} {status} answered {content_type}, not {list(content)}"
    if content_type != "application/json":
        return
    schema = {**content[content_type]["schema"], "components": DOCUMENT["components"]}
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(json.loads(body))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_any_request_answers_below_500_as_the_document_says(workers, data):
    method, path = data.draw(st.sampled_from(OPERATIONS), label="operation")
    operation = DOCUMENT["paths"][path][method]
    target = path
    query: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = data.draw(parameter_value(parameter), label=parameter["name"])
            target = target.replace("{" + parameter["name"] + "}", quote(value, safe="") or "x")
        elif data.draw(st.booleans()):
            query[parameter["name"]] = data.draw(parameter_value(parameter), label=parameter["name"])
    if data.draw(st.integers(0, 9)) == 0:
        query[data.draw(st.text(min_size=1, max_size=8))] = data.draw(JUNK_TEXT)
    body = data.draw(body_value(operation), label="body")
    auth = data.draw(st.sampled_from([TOKEN] * 8 + [None, "wrong-token"]), label="token")
    worker = workers[data.draw(st.integers(0, len(workers) - 1), label="worker")]
    url = target + ("?" + urlencode(query) if query else "")

    status, content_type, answer = request(worker, method, url, body, auth)

    event(f"{method.upper()} {path} -> {status}")
    assert status < 500, (method, url, body and body[:300], answer[:2000])
    if auth != TOKEN and (method, path) not in OPEN:  # unless the server could not even parse the request
        assert status == 401 or status == 400 and b"malformed HTTP request" in answer, (method, url, answer[:500])
    validate(method, path, status, content_type, answer)
