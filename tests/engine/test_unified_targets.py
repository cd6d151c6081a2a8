"""Unified targets: all / any N, with an optional overall target (the spec's three examples)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.pipeline.driver import TopologyTestDriver
from tests.factories import at

DAY = "2024-03-04"


def definition(mid, targets, condition="all", min_targets=1, overall=None, frequency="daily"):
    return {
        "type": "milestone_definition",
        "milestone_id": mid,
        "name": mid,
        "timezone": "UTC",
        "starts_at": "2024-01-01T00:00:00+00:00",
        "ends_at": "2025-01-01T00:00:00+00:00",
        "cycles": {
            "kind": "calendar",
            "frequency": frequency,
            "start_date": "2024-01-01",
            "count": 100 if frequency == "daily" else 12,
        },
        "group": {
            "condition": condition,
            "min_targets": min_targets,
            "targets": targets,
            **({"overall": overall} if overall else {}),
        },
    }


def minutes(target_id, event, value):
    return {
        "target_id": target_id,
        "name": f"{event} {value} min",
        "activity": "behavioural_event",
        "event_name": event,
        "kpi": "attribute_sum",
        "field": "minutes",
        "value": value,
    }


def exercise(driver, n, event, mins, hour=8):
    when = f"{DAY}T{hour:02d}:{n % 60:02d}:00+00:00"
    body = {
        "type": "behavioural_event",
        "event_id": f"x{n}",
        "customer_id": "fit",
        "event_time": when,
        "name": event,
        "attributes": {"minutes": mins},
    }
    driver.pipe("behavioural-events", "fit", body, timestamp=at(when))


def kinds(driver):
    return [(e["kind"], e["target_id"]) for e in driver.read("promotions")]


FITNESS = definition(
    "fit-today",
    [minutes("dance", "dance", "15"), minutes("jog", "jog", "30"), minutes("yoga", "yoga", "30")],
    overall={
        "target_id": "active",
        "name": "Active 120 min",
        "activity": "behavioural_event",
        "event_name": "exercise",
        "kpi": "attribute_sum",
        "field": "minutes",
        "value": "120",
    },
)


def test_example_1_fit_today_and_superfit_today(driver):
    """All three activities daily earn 'Fit Today'; 120 active minutes earn the overall 'Superfit Today'."""
    driver.pipe("definitions", "fit-today", FITNESS, timestamp=at(f"{DAY}T00:00:00+00:00"))
    exercise(driver, 1, "dance", "20")
    exercise(driver, 2, "jog", "30")
    assert ("achievement", "group") not in kinds(driver)
    exercise(driver, 3, "yoga", "30")
    assert kinds(driver) == [
        ("achievement", "dance"),
        ("achievement", "jog"),
        ("achievement", "yoga"),
        ("achievement", "group"),
    ]
    group = driver.read("promotions")[-1]
    assert (group["achieved_value"], group["defined_value"], group["target_name"]) == ("3", "3", "fit-today")
    assert [t["target_id"] for t in group["targets"]] == ["dance", "jog", "yoga", "active"]
    for n, event in enumerate(("exercise", "exercise"), start=4):
        exercise(driver, n, event, "60")
    assert kinds(driver)[-1] == ("achievement", "active")
    overall = driver.read("promotions")[-1]
    assert overall["targets"][-1]["overall"] is True and overall["achieved_value"] == "120"


def test_example_2_coupons_points_and_an_overall_monthly_points_goal(driver):
    """Redeem coupons, earn points, redeem points; overall: 500 points a month."""
    targets = [
        {
            "target_id": "coupons",
            "name": "Redeem 10 coupons",
            "activity": "coupon_redemption",
            "kpi": "count",
            "value": "10",
        },
        {
            "target_id": "earn",
            "name": "Earn 100 points",
            "activity": "currency_earned",
            "kpi": "currency_earned",
            "value": "100",
        },
        {
            "target_id": "redeem",
            "name": "Redeem points 2 times",
            "activity": "points_redemption",
            "kpi": "count",
            "value": "2",
        },
    ]
    overall = {
        "target_id": "month-points",
        "name": "500 points",
        "activity": "currency_earned",
        "kpi": "currency_earned",
        "value": "500",
    }
    driver.pipe(
        "definitions",
        "loyal",
        definition("loyal", targets, overall=overall, frequency="monthly"),
        timestamp=at(f"{DAY}T00:00:00+00:00"),
    )
    when = f"{DAY}T09:00:00+00:00"
    for n in range(10):
        driver.pipe(
            "activities",
            "fit",
            {
                "type": "customer_activity",
                "event_id": f"c{n}",
                "customer_id": "fit",
                "event_time": when,
                "activity": "coupon_redemption",
            },
            timestamp=at(when),
        )
    for n in range(2):
        driver.pipe(
            "activities",
            "fit",
            {
                "type": "customer_activity",
                "event_id": f"r{n}",
                "customer_id": "fit",
                "event_time": when,
                "activity": "points_redemption",
            },
            timestamp=at(when),
        )
    driver.pipe(
        "ledger",
        "fit",
        {
            "type": "ledger_entry",
            "event_id": "l1",
            "customer_id": "fit",
            "event_time": when,
            "entry_id": "l1",
            "amount": "600",
        },
        timestamp=at(when),
    )
    assert kinds(driver) == [
        ("achievement", "coupons"),
        ("achievement", "redeem"),
        ("achievement", "earn"),
        ("achievement", "month-points"),
        ("achievement", "group"),
    ]


def test_example_3_cross_category_spend_with_an_overall_spend(driver):
    def category(target_id, cat, value):
        return {
            "target_id": target_id,
            "name": f"{cat} {value}",
            "activity": "transaction",
            "level": "line_item",
            "kpi": "gross_amount",
            "value": value,
            "filter": {"field": "line_item.category", "op": "eq", "value": cat},
        }

    targets = [category("men", "men", "1000"), category("women", "women", "1000"), category("kids", "children", "500")]
    overall = {
        "target_id": "total",
        "name": "Spend 5000",
        "activity": "transaction",
        "level": "bill",
        "kpi": "gross_amount",
        "value": "5000",
    }
    driver.pipe(
        "definitions",
        "fashion",
        definition("fashion", targets, overall=overall, frequency="monthly"),
        timestamp=at(f"{DAY}T00:00:00+00:00"),
    )
    when = f"{DAY}T12:00:00+00:00"
    lines = [
        {"line_id": "1", "sku": "m1", "category": "men", "gross_amount": "1200"},
        {"line_id": "2", "sku": "w1", "category": "women", "gross_amount": "900"},
        {"line_id": "3", "sku": "k1", "category": "children", "gross_amount": "600"},
    ]
    driver.pipe(
        "transactions",
        "fit",
        {
            "type": "transaction",
            "event_id": "t1",
            "customer_id": "fit",
            "event_time": when,
            "bill_id": "b1",
            "gross_amount": "2700",
            "line_items": lines,
        },
        timestamp=at(when),
    )
    assert kinds(driver) == [("achievement", "men"), ("achievement", "kids")]
    driver.pipe(
        "transactions",
        "fit",
        {
            "type": "transaction",
            "event_id": "t2",
            "customer_id": "fit",
            "event_time": when,
            "bill_id": "b2",
            "gross_amount": "2400",
            "line_items": [{"line_id": "1", "sku": "w2", "category": "women", "gross_amount": "2400"}],
        },
        timestamp=at(when),
    )
    assert kinds(driver)[2:] == [("achievement", "women"), ("achievement", "total"), ("achievement", "group")]


@settings(max_examples=60, deadline=None)
@given(
    needed=st.integers(min_value=1, max_value=4),
    done=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=12),
)
def test_any_n_group_is_achieved_exactly_when_n_targets_are(needed, done):
    driver = TopologyTestDriver()
    targets = [minutes(t, t, "10") for t in "abcd"]
    driver.pipe(
        "definitions",
        "any",
        definition("any", targets, condition="any", min_targets=needed),
        timestamp=at(f"{DAY}T00:00:00+00:00"),
    )
    for n, event in enumerate(done):
        exercise(driver, n, event, "10")
        met = len(set(done[: n + 1]))
        group_events = [e for e in driver.read("promotions") if e["target_id"] == "group"]
        assert len(group_events) == (1 if met >= needed else 0)
    group_events = [e for e in driver.read("promotions") if e["target_id"] == "group"]
    if group_events:
        assert group_events[0]["achieved_value"] == str(needed) and group_events[0]["defined_value"] == str(needed)
