"""The committed OpenAPI document and API reference are what the routes and models generate."""

from pathlib import Path

import orjson

from milestream.api.reference import html_page, markdown
from milestream.api.routes import ROUTES, openapi, openapi_text

ROOT = Path(__file__).resolve().parents[2]


def test_committed_openapi_and_reference_match_the_code():
    assert (ROOT / "schemas" / "openapi.json").read_text() == openapi_text(), "run `make schemas`"
    assert (ROOT / "docs" / "api.md").read_text() == markdown(), "run `make schemas`"


def test_the_document_is_openapi_3_1_with_every_route_and_resolvable_references():
    document = openapi()
    assert document["openapi"] == "3.1.0"
    assert {(r.method.lower(), r.path) for r in ROUTES} == {
        (method, path) for path, item in document["paths"].items() for method in item
    }
    text = orjson.dumps(document).decode()
    for ref in {part.split('"')[0] for part in text.split('"$ref":"')[1:]}:
        assert ref.rsplit("/", 1)[-1] in document["components"]["schemas"], ref
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_the_html_reference_is_self_contained():
    page = html_page()
    assert "<script" not in page and "http://" not in page.replace("http://127.0.0.1:6066", "")
    assert "https://" not in page and "/customers/{customer_id}/milestones" in page
