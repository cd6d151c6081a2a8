"""Builders and a small in-memory runner for milestone-series engine tests.

Inputs are built as wire dicts and validated through their models, and every
output is validated against ``SeriesEvent`` / ``LifetimePoints``, so the tests
exercise the schemas as well as the engine.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime
from typing import Any

from milestream.engine.series import SeriesEngine, SeriesRegistry, apply_series_definition
from milestream.schemas.inputs import LedgerEntry
from milestream.schemas.series import (
    LifetimePoints,
    ProgramMembership,
    RewardRedemption,
    SeriesDefinition,
    SeriesEvent,
    SeriesRewardChange,
)

_ids = itertools.count(1)

START = "2025-01-01T00:00:00+00:00"


def tier(
    tier_id: str,
    points: str,
    reward_id: str | None = None,
    kind: str = "custom",
    reward_name: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    reward = {"reward_id": reward_id or f"reward-{tier_id}", "kind": kind}
    if reward_name:
        reward["name"] = reward_name
    return {"tier_id": tier_id, "name": f"Tier {tier_id}", "points": points, "reward": reward, **fields}


BRONZE_SILVER_GOLD = [tier("bronze", "100"), tier("silver", "250"), tier("gold", "500")]


def series(
    series_id: str = "s1",
    *,
    programs: list[str] | None = None,
    tiers: list[dict] | None = None,
    starts_at: str = START,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "type": "milestone_series",
        "series_id": series_id,
        "name": f"Series {series_id}",
        "starts_at": starts_at,
        "program_ids": programs or ["ambassadors"],
        "tiers": tiers or BRONZE_SILVER_GOLD,
        **fields,
    }


def ledger(customer: str, amount: str, when: str, source: str = "action", **fields: Any) -> dict[str, Any]:
    n = next(_ids)
    body = {
        "type": "ledger_entry",
        "event_id": f"le-{n}",
        "entry_id": f"entry-{n}",
        "customer_id": customer,
        "event_time": when,
        "amount": amount,
        "source": source,
    }
    if source == "adjustment":
        body.setdefault("reason", "points for actions before the series started")
        body.setdefault("actor", "brand-admin")
    body.update(fields)
    return body


def membership(customer: str, program: str, when: str = START, action: str = "join") -> dict[str, Any]:
    return {
        "type": "program_membership",
        "event_id": f"pm-{next(_ids)}",
        "customer_id": customer,
        "event_time": when,
        "program_id": program,
        "action": action,
    }


def redemption(
    customer: str, tier_id: str, reward_id: str, when: str, series_id: str = "s1", repetition: int = 1
) -> dict[str, Any]:
    return {
        "type": "reward_redemption",
        "event_id": f"rd-{next(_ids)}",
        "customer_id": customer,
        "event_time": when,
        "series_id": series_id,
        "tier_id": tier_id,
        "repetition": repetition,
        "reward_id": reward_id,
    }


MODELS = {"ledger_entry": LedgerEntry, "program_membership": ProgramMembership, "reward_redemption": RewardRedemption}


class SeriesWorld:
    """A registry, the engine and every customer's state, in memory."""

    def __init__(self) -> None:
        self.registry = SeriesRegistry()
        self.engine = SeriesEngine(self.registry)
        self.states: dict[str, dict[str, Any]] = defaultdict(dict)
        self.lifetime: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._causes = itertools.count()

    def define(self, body: dict[str, Any], version: str | None = None, at: str = START) -> list[dict[str, Any]]:
        """Create or edit a series; an edit that changes rewards is fanned out to every customer."""
        item = SeriesDefinition.model_validate(body)
        changes = apply_series_definition(self.registry, item)
        if not changes:
            return []
        command = SeriesRewardChange(
            series_id=item.series_id,
            series_name=item.name,
            version=version or f"definitions/0/{next(self._causes)}",
            changed_at=datetime.fromisoformat(at),
            changes=changes,
        )
        out = []
        for customer in sorted(self.states):
            out += self.engine.change_rewards(self.states[customer], customer, command)
        return self._checked(out)

    def send(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        event = MODELS[body["type"]].model_validate(body)
        result = self.engine.apply(self.states[event.customer_id], event, f"topic/0/{next(self._causes)}")
        if result.lifetime is not None:
            LifetimePoints.model_validate(result.lifetime)
            self.lifetime[event.customer_id] = result.lifetime
        return self._checked(result.events)

    def _checked(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for event in events:
            SeriesEvent.model_validate(event)
        self.events += events
        return events


def kinds(events: list[dict[str, Any]]) -> list[tuple]:
    """(kind, repetition, tier id) of each event, for compact assertions."""
    return [(e["kind"], e["repetition"], e["tier"]["tier_id"] if e["tier"] else None) for e in events]
