"""Builders of definitions and events for tests: valid by default, overridable."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def monthly_gross_definition(milestone_id: str = "m-monthly", target: str = "5000", **overrides: Any) -> dict:
    """The spec's running example: 5,000 gross spend in a calendar month (IST)."""
    definition = {
        "type": "milestone_definition",
        "milestone_id": milestone_id,
        "name": f"Monthly spend {milestone_id}",
        "starts_at": "2024-01-01T00:00:00+05:30",
        "ends_at": "2025-01-01T00:00:00+05:30",
        "timezone": "Asia/Kolkata",
        "cycles": {"kind": "calendar", "frequency": "monthly", "start_date": "2024-01-01", "count": 12},
        "group": {
            "targets": [
                {
                    "target_id": "spend",
                    "name": "Spend 5000",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": target,
                }
            ]
        },
    }
    definition.update(overrides)
    return definition


def transaction(customer: str, amount: str, when: str, n: int | str = 0, **fields: Any) -> dict:
    event = {
        "type": "transaction",
        "event_id": f"txn-{customer}-{n}",
        "customer_id": customer,
        "event_time": when,
        "bill_id": f"bill-{customer}-{n}",
        "gross_amount": amount,
    }
    event.update(fields)
    return event


def live_window(now: datetime, days_before: int = 40, days_after: int = 40) -> dict:
    """Definition fields for monthly UTC cycles running around ``now``: tests on a live worker, any date."""
    start = now - timedelta(days=days_before)
    return {
        "starts_at": start.isoformat(),
        "ends_at": (now + timedelta(days=days_after)).isoformat(),
        "timezone": "UTC",
        "cycles": {"kind": "calendar", "frequency": "monthly", "start_date": start.date().isoformat(), "count": 3},
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)
