"""Builders and helpers for engine tests: definitions, events and a small runner.

Every builder returns plain JSON-able dicts, valid by default, so a test only
spells out what its example is about.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

from milestream.schemas.outputs import MilestoneEvent
from milestream.state.base import StateStore
from milestream.state.keys import Namespace, StateKey

_ids = itertools.count(1)

TOPIC_OF = {
    "transaction": "transactions",
    "return": "returns",
    "behavioural_event": "behavioural-events",
    "ledger_entry": "ledger",
    "customer_activity": "activities",
    "enrolment": "enrolments",
}


def next_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


# ----------------------------------------------------------------- definitions
def target(
    target_id: str = "t1",
    name: str | None = None,
    *,
    activity: str = "transaction",
    level: str | None = "bill",
    kpi: str = "gross_amount",
    value: str | None = "5000",
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target_id": target_id,
        "name": name or f"Target {target_id}",
        "activity": activity,
        "kpi": kpi,
    }
    if activity == "transaction":
        body["level"] = level
    if value is not None:
        body["value"] = value
    body.update(fields)
    return body


def calendar(frequency: str = "monthly", start_date: str = "2024-01-01", count: int = 12) -> dict[str, Any]:
    return {"kind": "calendar", "frequency": frequency, "start_date": start_date, "count": count}


def rolling(frequency: str = "daily", count: int = 10) -> dict[str, Any]:
    return {"kind": "from_first_activity", "frequency": frequency, "count": count}


def till_achieved(max_cycles: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "till_achieved"}
    if max_cycles is not None:
        body["max_cycles"] = max_cycles
    return body


def custom(*periods: tuple[str | None, str, str]) -> dict[str, Any]:
    return {
        "kind": "custom",
        "periods": [{**({"name": name} if name else {}), "start": start, "end": end} for name, start, end in periods],
    }


def definition(
    milestone_id: str = "m1",
    *,
    targets: list[dict[str, Any]] | None = None,
    cycles: dict[str, Any] | None = None,
    name: str | None = None,
    starts_at: str = "2024-01-01T00:00:00+05:30",
    ends_at: str = "2025-01-01T00:00:00+05:30",
    timezone: str = "Asia/Kolkata",
    group: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "milestone_definition",
        "milestone_id": milestone_id,
        "name": name or f"Milestone {milestone_id}",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "timezone": timezone,
        "cycles": cycles or calendar(),
        "group": group or {"targets": targets or [target()]},
    }
    body.update(fields)
    return body


# ---------------------------------------------------------------------- events
def txn(customer: str, when: str, gross: str = "100", **fields: Any) -> dict[str, Any]:
    eid = next_id("txn")
    body = {
        "type": "transaction",
        "event_id": eid,
        "customer_id": customer,
        "event_time": when,
        "bill_id": f"bill-{eid}",
        "gross_amount": gross,
    }
    body.update(fields)
    return body


def line(sku: str, gross: str, **fields: Any) -> dict[str, Any]:
    return {"line_id": next_id("line"), "sku": sku, "gross_amount": gross, **fields}


def behavioural(customer: str, name: str, when: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "behavioural_event",
        "event_id": next_id("be"),
        "customer_id": customer,
        "event_time": when,
        "name": name,
        **fields,
    }


def customer_activity(customer: str, activity: str, when: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "customer_activity",
        "event_id": next_id("act"),
        "customer_id": customer,
        "event_time": when,
        "activity": activity,
        **fields,
    }


def ledger(
    customer: str, when: str, amount: str, *, currency: str = "points", kind: str = "regular", **fields: Any
) -> dict[str, Any]:
    eid = next_id("led")
    return {
        "type": "ledger_entry",
        "event_id": eid,
        "entry_id": f"entry-{eid}",
        "customer_id": customer,
        "event_time": when,
        "amount": amount,
        "currency": currency,
        "kind": kind,
        **fields,
    }


def bill_return(customer: str, when: str, **fields: Any) -> dict[str, Any]:
    eid = next_id("ret")
    return {
        "type": "return",
        "event_id": eid,
        "return_id": f"return-{eid}",
        "customer_id": customer,
        "event_time": when,
        "bill_id": f"bill-of-{eid}",
        "scope": "bill",
        **fields,
    }


def enrolment(customer: str, milestone_id: str, when: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "enrolment",
        "event_id": next_id("enr"),
        "customer_id": customer,
        "event_time": when,
        "milestone_id": milestone_id,
        **fields,
    }


# ---------------------------------------------------------------------- runner
def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def load(driver, *definitions: dict[str, Any]) -> None:
    """Publish definitions; fail loudly if one is rejected."""
    for body in definitions:
        processed = driver.pipe("definitions", body["milestone_id"], body)
        assert processed.outcome == "applied", driver.read("dead-letters")[-1]["detail"]


def send(driver, *events: dict[str, Any], timestamp: str | datetime | None = None):
    """Pipe events to their topics, recorded at their own event time unless told otherwise."""
    processed = None
    for event in events:
        when = timestamp if timestamp is not None else event["event_time"]
        when = at(when) if isinstance(when, str) else when
        processed = driver.pipe(TOPIC_OF[event["type"]], event["customer_id"], event, timestamp=when)
        assert processed.outcome in ("applied", "no_output"), processed.outcome
    return processed


def outputs(driver) -> list[MilestoneEvent]:
    """Promotions-topic events, validated against the output schema."""
    return [MilestoneEvent.model_validate(e) for e in driver.read("promotions")]


def kinds(driver) -> list[tuple[str, str, int]]:
    """(kind, target_id, cycle index) of every promotions event, oldest first."""
    return [(e.kind, e.target_id, e.cycle.index) for e in outputs(driver)]


def progress(driver, customer: str, milestone_id: str, target_id: str, cycle: int) -> Decimal:
    """A customer's stored progress on a target in a cycle."""
    from milestream.engine.core import progress_value
    from milestream.engine.measures import accumulation

    compiled = driver.topology.registry.milestones[milestone_id]
    kpi = next(t.kpi for t in compiled.definition.group.all_targets() if t.target_id == target_id)
    state = customer_state(driver, customer) or {}
    cycle_state = state.get("m", {}).get(milestone_id, {}).get("c", {}).get(str(cycle), {})
    return progress_value(cycle_state.get("t", {}).get(target_id, {}), accumulation(kpi))


def customer_state(driver, customer: str) -> dict[str, Any] | None:
    return driver.store.get(Namespace.CUSTOMER.key(customer))


def documents(store: StateStore) -> dict[StateKey, dict[str, Any] | None]:
    """Everything in a store, every namespace."""
    return {key: store.get(key) for namespace in Namespace for key in map(namespace.key, store.keys(namespace))}


def rejection(driver, body: dict[str, Any]) -> str:
    """Publish a definition expected to be invalid; return the dead letter's detail."""
    processed = driver.pipe("definitions", body["milestone_id"], body)
    assert processed.outcome == "invalid_definition", processed.outcome
    assert body["milestone_id"] not in driver.topology.registry.milestones
    return driver.read("dead-letters")[-1]["detail"]


def close(driver, now: str | datetime, partition: int = 0) -> list[Any]:
    """Send a close tick for ``now`` (and the continuations it asks for); return what each tick did."""
    moment = at(now) if isinstance(now, str) else now
    tick = {"type": "close_tick", "schema_version": 1, "now": moment.isoformat()}
    done = []
    while True:
        processed = driver.pipe("close-ticks", None, tick, timestamp=moment, partition=partition)
        done.append(processed)
        if not any(r.topic == driver.topic("close-ticks") for r in processed.records):
            return done


def closes(driver) -> list[tuple[str, int, str]]:
    """(customer, cycle index, achieved value) of every cycle-close event, oldest first."""
    return [(e.customer_id, e.cycle.index, str(e.achieved_value)) for e in outputs(driver) if e.kind == "cycle_close"]
