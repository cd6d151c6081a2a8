"""A milestone series through the real broker and a real worker: a few customers."""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.worker import consume, consume_quietly, produce

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
START = (NOW - timedelta(days=10)).replace(microsecond=0)


def tiers(bronze_reward="tote-bag"):
    return [
        {"tier_id": "bronze", "name": "Bronze", "points": "100", "reward": {"reward_id": bronze_reward}},
        {"tier_id": "silver", "name": "Silver", "points": "250", "reward": {"reward_id": "hoodie"}},
    ]


def series(bronze_reward="tote-bag"):
    return {
        "type": "milestone_series",
        "series_id": "ambassador-2025",
        "name": "Ambassador tiers",
        "starts_at": START.isoformat(),
        "program_ids": ["ambassadors"],
        "tiers": tiers(bronze_reward),
        "promote_to_program_id": "elite",
    }


def entry(customer, n, amount, source="action", **fields):
    return (
        "ledger",
        customer,
        {
            "type": "ledger_entry",
            "event_id": f"{customer}-{n}",
            "entry_id": f"{customer}-{n}",
            "customer_id": customer,
            "event_time": (START + timedelta(days=1, minutes=n)).isoformat(),
            "amount": amount,
            "source": source,
            **fields,
        },
    )


def consumed(worker, logical: str) -> int:
    """Records of a topic the worker has consumed (from its Prometheus counters)."""
    text = worker.http("/metrics") or ""
    name = re.escape(worker.settings.topic_prefix + logical)
    return int(
        sum(
            float(v) for v in re.findall(rf'milestream_events_consumed_total{{[^}}]*topic="{name}"[^}}]*}} (\S+)', text)
        )
    )


def wait_until(condition, what, worker, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.log_tail()}")


def test_series_tiers_promotion_lifetime_points_and_a_reward_change(worker):
    settings = worker.settings
    produce(settings, [("definitions", "series:ambassador-2025", series())])
    wait_until(lambda: "ambassador-2025" in (worker.http("/series", expect_json=True) or {}), "the series", worker)
    customers = ["ana", "bo", "cy"]
    produce(
        settings,
        [
            (
                "enrolments",
                c,
                {
                    "type": "program_membership",
                    "event_id": f"join-{c}",
                    "customer_id": c,
                    "event_time": START.isoformat(),
                    "program_id": "ambassadors",
                },
            )
            for c in customers
        ],
    )
    wait_until(lambda: consumed(worker, "enrolments") >= 3, "the memberships", worker)

    produce(
        settings,
        [
            entry("ana", 1, "120", "campaign"),
            entry("bo", 1, "80", "referral"),
            entry("bo", 2, "40", "adjustment", reason="missed referral", actor="ops-1"),
            entry("cy", 1, "200"),
            entry("cy", 2, "60", "campaign"),
        ],
    )
    seen = consume(
        settings,
        "promotions",
        lambda s: (
            sum(e["kind"] == "program_promotion" for e in s) >= 1 and sum(e["kind"] == "tier_unlocked" for e in s) >= 4
        ),
    )
    unlocked = sorted((e["customer_id"], e["tier"]["tier_id"]) for e in seen if e["kind"] == "tier_unlocked")
    assert unlocked == [("ana", "bronze"), ("bo", "bronze"), ("cy", "bronze"), ("cy", "silver")]
    (promotion,) = [e for e in seen if e["kind"] == "program_promotion"]
    assert (promotion["customer_id"], promotion["promote_to_program_id"]) == ("cy", "elite")

    lifetime = consume(settings, "lifetime-points", lambda s: len(s) >= 5)
    latest = {r["customer_id"]: r["points"] for r in lifetime}
    assert latest == {"ana": "120", "bo": "120", "cy": "260"}
    # The state is committed a moment after the outputs: the first ranking snapshot must see it.
    for customer, points in latest.items():
        worker.http_until(f"/lifetime-points/{customer}", lambda page, points=points: page.get("points") == points)
    ranking = worker.http("/lifetime-points?top=2", expect_json=True)
    assert [r["customer_id"] for r in ranking["customers"]] == ["cy", "ana"]  # ties by customer id
    assert worker.http("/lifetime-points/bo", expect_json=True) == {
        "customer_id": "bo",
        "org_id": "default",
        "points": "120",
    }

    # ana redeems the tote bag; then the brand changes bronze's reward.
    produce(
        settings,
        [
            (
                "redemptions",
                "ana",
                {
                    "type": "reward_redemption",
                    "event_id": "rd-1",
                    "customer_id": "ana",
                    "event_time": NOW.isoformat(),
                    "series_id": "ambassador-2025",
                    "tier_id": "bronze",
                    "reward_id": "tote-bag",
                },
            )
        ],
    )
    wait_until(lambda: consumed(worker, "redemptions") >= 1, "the redemption", worker)
    produce(settings, [("definitions", "series:ambassador-2025", series(bronze_reward="discount-20"))])
    after = consume_quietly(settings, "promotions", quiet=4.0)
    changed = sorted(
        (e["customer_id"], e["reward"]["reward_id"], e["previous_reward"]["reward_id"])
        for e in after
        if e["kind"] == "tier_reward_changed"
    )
    assert changed == [("bo", "discount-20", "tote-bag"), ("cy", "discount-20", "tote-bag")]
    assert len({e["event_id"] for e in after}) == len(after)
