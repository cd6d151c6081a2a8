"""The API's routes, and the OpenAPI 3.1 document generated from them and their models.

One table (``ROUTES``) says, for each operation, its method and path, the handler, the query
parameters and the request and response models; the server registers the handlers from it and
``openapi()`` documents the same table, so the document cannot drift from what is served
(schemas/openapi.json is committed, and a test compares it with this).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..schemas.definitions import MilestoneDefinition
from . import models as m

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False
    location: str = "query"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str  # the Api method's name (handlers.py); "" for pages served elsewhere (worker/pages.py)
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    open: bool = False  # served without a token
    content_type: str = "application/json"
    # Pages (no handler): the statuses they answer besides 200, and the body's model (None: an object).
    page_errors: dict[int, type[BaseModel] | None] = field(default_factory=dict)


def _id(name: str, description: str) -> Param:
    return Param(name, description, {"type": "string", "minLength": 1, "maxLength": 128}, True, "path")


ORG = Param("org_id", "The customer's organisation.", {"type": "string", "default": "default"})
CUSTOMER = _id("customer_id", "The customer id (the input records' key).")
MILESTONE = _id("milestone_id", "The milestone id.")
TARGET = Param("target", "A target id, or 'group' (default: the single target, else the group).", {"type": "string"})
CYCLE = Param(
    "cycle",
    "Cycle index (default: the calendar cycle running now; 1 for cycles that start per customer).",
    {"type": "integer", "minimum": 1, "maximum": 100},
)
NEIGHBOURS = Param(
    "neighbours", "Customers shown above and below.", {"type": "integer", "minimum": 0, "maximum": 10, "default": 2}
)
BACKFILL = Param(
    "backfill",
    "After publishing, compute the milestone over the records the topics retain from its start, in this "
    "worker's background (docs/backfill.md); follow it at /milestones/{milestone_id}/backfill.",
    {"type": "boolean", "default": False},
)
# A customer's standings: asked of any worker, and of the owner by the worker asked (internal).
STANDINGS_PARAMS = (
    CUSTOMER,
    ORG,
    NEIGHBOURS,
    Param("milestone_id", "Only this milestone's leaderboards.", {"type": "string"}),
)
READ_ERRORS: dict[int, type[BaseModel] | None] = {400: m.ErrorResponse, 401: m.ErrorResponse, 404: m.ErrorResponse}
WRITE_ERRORS: dict[int, type[BaseModel] | None] = {
    **READ_ERRORS,
    413: m.ErrorResponse,
    422: m.ErrorResponse,
    503: m.ErrorResponse,
}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/customers/{customer_id}/milestones",
        "customer_milestones",
        "A customer's progress in every milestone they are in",
        "progress",
        (CUSTOMER, ORG),
        responses={200: m.CustomerProgress, **READ_ERRORS, 503: m.ErrorResponse},
    ),
    Route(
        "GET",
        "/customers/{customer_id}/milestones/{milestone_id}",
        "customer_milestone",
        "A customer's progress in one milestone",
        "progress",
        (CUSTOMER, MILESTONE, ORG),
        responses={200: m.MilestoneProgress, **READ_ERRORS, 503: m.ErrorResponse},
    ),
    Route(
        "GET",
        "/customers/{customer_id}/milestones/{milestone_id}/history",
        "customer_history",
        "What each recent input contributed to a customer's progress in a milestone",
        "progress",
        (CUSTOMER, MILESTONE, ORG),
        responses={200: m.MilestoneHistory, **READ_ERRORS, 503: m.ErrorResponse},
    ),
    Route(
        "GET",
        "/leaderboards/customers/{customer_id}",
        "customer_leaderboards",
        "A customer's rank and value in every leaderboard, with their neighbours",
        "leaderboards",
        STANDINGS_PARAMS,
        responses={200: m.CustomerLeaderboards, **READ_ERRORS, 503: m.ErrorResponse},
    ),
    Route(
        "GET",
        "/leaderboards/{milestone_id}",
        "leaderboard",
        "The top customers of a milestone's leaderboard (global ranks, ties by customer id)",
        "leaderboards",
        (
            MILESTONE,
            TARGET,
            CYCLE,
            Param("top", "Customers per page.", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}),
            Param("page", "Page, from 1 (top x page at most 10,000).", {"type": "integer", "minimum": 1, "default": 1}),
        ),
        responses={200: m.Leaderboard, **READ_ERRORS, 503: m.ErrorResponse},
    ),
    Route(
        "GET",
        "/internal/leaderboards/{milestone_id}",
        "leaderboard_part",
        "Internal: this worker's partitions of a leaderboard (what /leaderboards merges)",
        "internal",
        (
            MILESTONE,
            TARGET,
            CYCLE,
            Param("limit", "Entries of the head.", {"type": "integer", "minimum": 0, "maximum": 10000}),
            Param("around", "A customer id: count the entries ahead of it.", {"type": "string"}),
            Param("value", "The customer's value (with around).", {"type": "string"}),
            Param("neighbours", "Entries above and below (with around).", {"type": "integer", "minimum": 0}),
        ),
        responses={200: m.LeaderboardPart, **READ_ERRORS},
    ),
    Route(
        "GET",
        "/internal/standings/{customer_id}",
        "standings_part",
        "Internal: the leaderboards a customer is on and the owner's part of each (what a rank merges)",
        "internal",
        STANDINGS_PARAMS,
        responses={200: m.StandingParts, **READ_ERRORS, 503: m.ErrorResponse},
    ),
    Route(
        "POST",
        "/milestones/{milestone_id}/enrolments",
        "enrol",
        "Enrol (or unenrol) one customer or a batch, with their own targets: produces enrolment events",
        "commands",
        (MILESTONE,),
        body=m.EnrolmentRequest,
        responses={202: m.EnrolmentAccepted, **WRITE_ERRORS},
    ),
    Route(
        "PUT",
        "/milestones/{milestone_id}",
        "put_definition",
        "Create or edit a milestone: checked with the engine's rules, then produced to the definitions topic",
        "commands",
        (MILESTONE, BACKFILL),
        body=MilestoneDefinition,
        responses={202: m.DefinitionAccepted, **WRITE_ERRORS},
    ),
    Route(
        "GET",
        "/milestones/{milestone_id}/backfill",
        "backfill_status",
        "A milestone's last backfill run: state, records copied, and whether this worker runs it",
        "commands",
        (MILESTONE,),
        responses={200: m.BackfillProgress, **READ_ERRORS, 503: m.ErrorResponse},
    ),
    Route(
        "POST",
        "/milestones/{milestone_id}/status",
        "set_status",
        "Deactivate or reactivate a milestone",
        "commands",
        (MILESTONE,),
        body=m.StatusRequest,
        responses={202: m.DefinitionAccepted, **WRITE_ERRORS},
    ),
    Route(
        "POST",
        "/milestones/{milestone_id}/clone",
        "clone",
        "Clone a live or upcoming milestone under a new id",
        "commands",
        (MILESTONE,),
        body=m.CloneRequest,
        responses={202: m.DefinitionAccepted, **WRITE_ERRORS},
    ),
    Route(
        "POST",
        "/customers/{customer_id}/adjustments",
        "adjust",
        "A manual points adjustment (a ledger entry with its reason and who made it)",
        "commands",
        (CUSTOMER,),
        body=m.AdjustmentRequest,
        responses={202: m.AdjustmentAccepted, **WRITE_ERRORS},
    ),
    # Pages served by worker/pages.py and worker/series.py, documented here.
    Route("GET", "/definitions", "", "The milestones this worker knows, with their status", "pages"),
    Route("GET", "/series", "", "The milestone series this worker knows (docs/series.md)", "pages"),
    Route(
        "GET",
        "/lifetime-points",
        "",
        "Customers of this worker's partitions by lifetime points (a snapshot)",
        "pages",
        (
            Param("top", "How many.", {"type": "integer", "minimum": 1, "default": 100}),
            Param("order", "desc or asc.", {"type": "string", "enum": ["asc", "desc"]}),
        ),
        page_errors={400: m.ErrorResponse, 503: m.ErrorResponse},
    ),
    Route(
        "GET",
        "/lifetime-points/{customer_id}",
        "",
        "One customer's lifetime points, when this worker holds the customer's partition",
        "pages",
        (CUSTOMER, ORG),
        page_errors={404: m.ErrorResponse},
    ),
    Route("GET", "/openapi.json", "openapi", "This document", "reference", open=False),
    Route(
        "GET", "/api/reference", "reference", "This document, rendered (HTML)", "reference", content_type="text/html"
    ),
    Route(
        "GET",
        "/healthz",
        "",
        "Ready (200) or loading definitions (503); no token",
        "operations",
        open=True,
        page_errors={503: None},
    ),
    Route(
        "GET",
        "/metrics",
        "",
        "Prometheus metrics; no token",
        "operations",
        open=True,
        content_type="text/plain",
    ),
)


def _operation_id(route: Route) -> str:
    if route.handler:
        return route.handler
    return route.path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace("-", "_")


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ROUTES."""
    inputs = [(r.body, "validation") for r in ROUTES if r.body is not None]
    outputs = [
        (model, "serialization")
        for r in ROUTES
        for model in (*r.responses.values(), *r.page_errors.values(), m.ErrorResponse)
        if model is not None
    ]
    keyed, top = models_json_schema(
        list(dict.fromkeys(inputs + outputs)),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, Any] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "operationId": _operation_id(route),
            "summary": route.summary,
            "tags": [route.tag],
        }
        if route.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required or p.location == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in route.params
            ]
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keyed[(route.body, "validation")]}},
            }
        responses: dict[str, Any] = {}
        for status, model in sorted(route.responses.items()):
            schema = keyed[(model, "serialization")] if model is not None else {"type": "object"}
            responses[str(status)] = {
                "description": "accepted" if status == 202 else "success" if status < 300 else "error",
                "content": {"application/json": {"schema": schema}},
            }
        if not route.responses:
            schema = {"type": "object"} if route.content_type == "application/json" else {"type": "string"}
            responses["200"] = {"description": "success", "content": {route.content_type: {"schema": schema}}}
            for status, model in sorted(route.page_errors.items()):
                schema = keyed[(model, "serialization")] if model is not None else {"type": "object"}
                responses[str(status)] = {"description": "error", "content": {"application/json": {"schema": schema}}}
        error = {
            "description": "error",
            "content": {"application/json": {"schema": keyed[(m.ErrorResponse, "serialization")]}},
        }
        responses.setdefault("400", error)  # a request the HTTP server cannot parse (errors.PROTOCOL_ERRORS)
        if not route.open:
            responses.setdefault("401", error)  # the token check answers before any page or handler
        responses = dict(sorted(responses.items()))
        if route.open:
            operation["security"] = []
        operation["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Milestream worker API",
            "version": API_VERSION,
            "description": "A customer's milestone progress and history, leaderboards, enrolment and "
            "definitions (docs/api.md). Every operation but /healthz and /metrics needs "
            "`Authorization: Bearer <MILESTREAM_API_TOKEN>` when a token is set.",
        },
        "servers": [{"url": "http://127.0.0.1:6066"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_text() -> str:
    return json.dumps(openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
