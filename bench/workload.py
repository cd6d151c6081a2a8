"""The benchmark's input: one milestone definition and generated transactions.

The milestone is the spec's running example: gross spend of 5,000 in a
calendar month (bill level, same target for every customer, enrolment "all"),
with sub-targets at 25 %, 50 % and 75 %. Transactions have event times spread
over the current month (so they all fall in the active cycle) and amounts of
20.00-480.00, so a customer with the average 20 bills spends about the target:
some reach no threshold, most reach a few, which gives a realistic share of
events that produce milestone events. The backfill bench moves the milestone's
start and the event times months back (``start``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson

MILESTONE_ID = "bench-monthly-spend"
TARGET_CENTS = 500_000
SUB_TARGET_PERCENTAGES = (25, 50, 75)
# Thresholds a customer's monthly spend can cross: the sub-targets, then the target.
THRESHOLDS_CENTS = tuple(TARGET_CENTS * p // 100 for p in SUB_TARGET_PERCENTAGES) + (TARGET_CENTS,)
AMOUNT_CENTS = (2_000, 48_000)


def month_start(now: datetime) -> datetime:
    return now.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def definition(
    now: datetime, start: datetime | None = None, milestone_id: str = MILESTONE_ID, leaderboard: bool = False
) -> dict:
    """The milestone, its first cycle the month of ``start`` (default: this month), its leaderboard
    setting on if asked."""
    start = month_start(start or now)
    return {
        "type": "milestone_definition",
        "milestone_id": milestone_id,
        "name": "Benchmark monthly spend",
        "description": "Gross spend of 5,000 in a calendar month, sub-targets at 25/50/75 %",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=366)).isoformat(),
        "timezone": "UTC",
        "cycles": {"kind": "calendar", "frequency": "monthly", "start_date": start.date().isoformat(), "count": 12},
        "group": {
            "targets": [
                {
                    "target_id": "spend",
                    "name": "Monthly spend 5000",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": f"{TARGET_CENTS // 100}",
                    "sub_targets": [
                        {"name": f"{p}%", "criterion": "percentage", "value": str(p)} for p in SUB_TARGET_PERCENTAGES
                    ],
                }
            ]
        },
        "settings": {"leaderboard": leaderboard},
    }


def _cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def transaction(event_id: str, customer: str, when: datetime, cents: int, store: str) -> bytes:
    """A transaction as upstream systems send it (the shape of ``schemas.inputs.Transaction``)."""
    return orjson.dumps(
        {
            "type": "transaction",
            "event_id": event_id,
            "customer_id": customer,
            "event_time": when.isoformat(),
            "bill_id": f"bill-{event_id}",
            "gross_amount": _cents(cents),
            "store_id": store,
        }
    )


@dataclass
class Workload:
    records: list[tuple[bytes, bytes]]  # (key, value), in production order
    customers: int
    expected_outputs: int  # milestone events the definition yields for these records
    times_ms: list[int] = field(default_factory=list)  # each record's event time (epoch ms), when known

    def __len__(self) -> int:
        return len(self.records)


def transactions(
    count: int, customers: int, now: datetime, seed: int = 7, tag: str = "b", start: datetime | None = None
) -> Workload:
    """``count`` transactions of ``customers`` customers (chosen uniformly), from ``start`` (default: the
    start of this month) to ``now``."""
    rng = random.Random(seed)
    start = start or month_start(now)
    span = max((now - start).total_seconds() - 1, 1.0)
    names = [f"cust-{c:07d}" for c in range(customers)]
    keys = [name.encode() for name in names]
    spent: dict[tuple[int, int, int], int] = {}  # by customer and calendar month: the cycle's spend
    records, times_ms = [], []
    for i in range(count):
        c = rng.randrange(customers)
        cents = rng.randint(*AMOUNT_CENTS)
        when = start + timedelta(seconds=rng.random() * span)
        month = (c, when.year, when.month)
        spent[month] = spent.get(month, 0) + cents
        records.append((keys[c], transaction(f"{tag}-{i}", names[c], when, cents, f"store-{i % 50:02d}")))
        times_ms.append(int(when.timestamp() * 1000))
    expected = sum(1 for total in spent.values() for threshold in THRESHOLDS_CENTS if total >= threshold)
    return Workload(records, customers, expected, times_ms)


def latency_transactions(count: int, now: datetime, seed: int = 11, tag: str = "lat") -> Workload:
    """``count`` first transactions of fresh customers, each worth 1,250.00-2,499.99.

    Each crosses exactly the 25 % sub-target (1,250) and nothing else, so every
    input yields exactly one milestone event.
    """
    rng = random.Random(seed)
    low, high = THRESHOLDS_CENTS[0], THRESHOLDS_CENTS[1] - 1
    records = []
    for i in range(count):
        name = f"{tag}-{i:07d}"
        when = now - timedelta(seconds=rng.random() * 60)
        records.append((name.encode(), transaction(f"{tag}-{i}", name, when, rng.randint(low, high), "store-00")))
    return Workload(records, count, count)
