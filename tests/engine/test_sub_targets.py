"""Creating a sub-target: percentage and absolute sub-targets, once per cycle."""

import math
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.engine.core import percentage_of
from milestream.pipeline.driver import TopologyTestDriver
from milestream.schemas.definitions import WHOLE_NUMBER_KPIS, Kpi

from .builders import calendar, definition, enrolment, line, load, outputs, send, target, txn


def sub(name: str, value: str, criterion: str = "percentage") -> dict:
    return {"name": name, "criterion": criterion, "value": value}


def test_sub_target_80_percent_of_20_transactions_is_16(driver):
    """20 transactions a quarter with a sub-target at 80%: milestoneValueDefined is 16.

    It fires once, on the 16th transaction, not again on the 17th or 18th."""
    load(
        driver,
        definition(
            cycles=calendar("quarterly", "2024-01-01", 4),
            targets=[target("txns", "Quarterly 20", kpi="count", value="20", sub_targets=[sub("Nearly there", "80")])],
        ),
    )
    send(driver, *(txn("c1", f"2024-02-{d:02d}T10:00:00+05:30") for d in range(1, 16)))
    assert outputs(driver) == []
    send(driver, *(txn("c1", f"2024-03-{d:02d}T10:00:00+05:30") for d in range(1, 4)))  # 16th, 17th, 18th
    (event,) = outputs(driver)
    assert event.kind == "sub_target"
    assert event.milestone_value_defined == Decimal(16)
    assert (event.achieved_value, event.defined_value, event.gap) == (Decimal(16), Decimal(20), Decimal(4))
    assert event.trigger_names == ["Nearly there"]
    assert event.is_target_achieved_event is False and event.achieved is False
    assert event.cause == "milestream.transactions/0/15"


def test_75_percent_of_10_transactions_rounds_up_to_8(driver):
    """Whole-unit KPIs round the percentage up: 7.5 transactions cannot be made, and 7 would
    be reached below 75 %."""
    load(driver, definition(targets=[target(kpi="count", value="10", sub_targets=[sub("Three quarters", "75")])]))
    send(driver, *(txn("c1", f"2024-01-{d:02d}T10:00:00+05:30") for d in range(1, 8)))
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-01-08T10:00:00+05:30"))
    (event,) = outputs(driver)
    assert (event.milestone_value_defined, event.achieved_value) == (Decimal(8), Decimal(8))


def test_75_percent_of_10_days_of_activity_and_of_10_items_is_8(driver):
    load(
        driver,
        definition(
            group={
                "condition": "any",
                "targets": [
                    target("days", kpi="days_of_activity", value="10", sub_targets=[sub("Most days", "75")]),
                    target(
                        "items", level="line_item", kpi="quantity", value="10", sub_targets=[sub("Most items", "75")]
                    ),
                ],
            }
        ),
    )
    send(
        driver,
        *(
            txn("c1", f"2024-01-{d:02d}T10:00:00+05:30", line_items=[line("SKU", "10", quantity="1")])
            for d in range(1, 9)
        ),
    )
    assert sorted((e.target_id, e.milestone_value_defined, e.achieved_value) for e in outputs(driver)) == [
        ("days", Decimal(8), Decimal(8)),
        ("items", Decimal(8), Decimal(8)),
    ]


def test_a_percentage_follows_the_customers_own_target(driver):
    """A per-customer target recomputes the percentage: 75 % of c1's 10 is 8, of c2's 4 is 3."""
    load(
        driver,
        definition(
            target_values="per_customer",
            enrolment={"method": "specific", "customers": []},
            targets=[target("txns", kpi="count", value=None, sub_targets=[sub("Three quarters", "75")])],
        ),
    )
    send(
        driver,
        enrolment("c1", "m1", "2024-01-01T00:00:00+05:30", targets=[{"target_id": "txns", "value": "10"}]),
        enrolment("c2", "m1", "2024-01-01T00:00:00+05:30", targets=[{"target_id": "txns", "value": "4"}]),
    )
    for customer in ("c1", "c2"):
        send(driver, *(txn(customer, f"2024-01-{d:02d}T10:00:00+05:30") for d in range(1, 9)))
    assert [(e.customer_id, e.kind, e.milestone_value_defined, e.achieved_value) for e in outputs(driver)] == [
        ("c1", "sub_target", Decimal(8), Decimal(8)),
        ("c2", "sub_target", Decimal(3), Decimal(3)),
        ("c2", "achievement", None, Decimal(4)),
    ]


def test_a_percentage_of_an_amount_is_exact(driver):
    """Amounts are not rounded to a currency: 12.5 % of 10.05 is 10.05 × 0.125 = 1.25625."""
    load(driver, definition(targets=[target(value="10.05", sub_targets=[sub("Eighth", "12.5")])]))
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "1.2562"))
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "0.0001"))
    (event,) = outputs(driver)
    assert event.milestone_value_defined == Decimal("1.25625")


def test_sub_target_80_percent_of_a_20_amount_target_is_16(driver):
    load(driver, definition(targets=[target("spend", value="20", sub_targets=[sub("Most", "80")])]))
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "15.99"))
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "0.01"))
    (event,) = outputs(driver)
    assert event.milestone_value_defined == Decimal(16)
    assert event.achieved_value == Decimal(16)


def test_accessories_sub_targets_20_50_100_percent_of_10000(driver):
    """Accessories bought at one store, target ₹10,000 with sub-targets at 20% (₹2000),
    50% (₹5000) and 100% (₹10,000); the 100% sub-target comes with the achievement."""
    load(
        driver,
        definition(
            targets=[
                target(
                    "accessories",
                    "Accessories 10k",
                    level="line_item",
                    value="10000",
                    scope={"stores": ["S1"]},
                    filter={"field": "line_item.category", "op": "eq", "value": "accessories"},
                    sub_targets=[sub("Progress 20", "20"), sub("Reward 50", "50"), sub("Full 100", "100")],
                )
            ]
        ),
    )

    def buy(amount, day, store="S1"):
        return txn(
            "c1",
            f"2024-01-{day:02d}T10:00:00+05:30",
            amount,
            store_id=store,
            line_items=[line("BELT", amount, category="accessories"), line("TV", "30000", category="tv")],
        )

    send(driver, buy("2500", 2))
    send(driver, buy("9000", 3, store="S2"))  # another store
    send(driver, buy("3000", 4))
    send(driver, buy("4500", 5))
    events = outputs(driver)
    assert [(e.kind, e.trigger_names, e.milestone_value_defined, e.achieved_value) for e in events] == [
        ("sub_target", ["Progress 20"], Decimal(2000), Decimal(2500)),
        ("sub_target", ["Reward 50"], Decimal(5000), Decimal(5500)),
        ("sub_target", ["Full 100"], Decimal(10000), Decimal(10000)),
        ("achievement", ["Accessories 10k"], None, Decimal(10000)),
    ]
    assert len({e.event_id for e in events}) == 4


def test_one_purchase_crossing_several_sub_targets_fires_each(driver):
    load(driver, definition(targets=[target(value="1000", sub_targets=[sub("ABC1", "30"), sub("ABC2", "60")])]))
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "700"))
    assert [(e.kind, e.trigger_names) for e in outputs(driver)] == [("sub_target", ["ABC1"]), ("sub_target", ["ABC2"])]


def test_each_sub_target_fires_once_per_cycle_and_again_in_the_next(driver):
    """ABC1 at 30% and ABC2 at 60% of 1000 gross a month."""
    load(driver, definition(targets=[target(value="1000", sub_targets=[sub("ABC1", "30"), sub("ABC2", "60")])]))
    send(
        driver,
        txn("c1", "2024-01-05T10:00:00+05:30", "400"),  # ABC1
        txn("c1", "2024-01-06T10:00:00+05:30", "100"),
        txn("c1", "2024-01-07T10:00:00+05:30", "300"),  # ABC2
        txn("c1", "2024-01-08T10:00:00+05:30", "100"),
        txn("c1", "2024-02-01T10:00:00+05:30", "350"),  # February: ABC1 again
    )
    assert [(e.trigger_names[0], e.cycle.index, e.milestone_value_defined) for e in outputs(driver)] == [
        ("ABC1", 1, Decimal(300)),
        ("ABC2", 1, Decimal(600)),
        ("ABC1", 2, Decimal(300)),
    ]


def test_percentage_sub_target_follows_the_target_of_each_cycle(driver):
    load(
        driver,
        definition(
            cycles=calendar("monthly", "2024-01-01", 3),
            targets=[target(value=None, values_per_cycle=["5000", "10000", "15000"], sub_targets=[sub("Half", "50")])],
        ),
    )
    send(
        driver,
        txn("c1", "2024-01-05T10:00:00+05:30", "2500"),
        txn("c1", "2024-02-05T10:00:00+05:30", "5000"),
        txn("c1", "2024-03-05T10:00:00+05:30", "7500"),
    )
    assert [(e.cycle.index, e.milestone_value_defined) for e in outputs(driver)] == [
        (1, Decimal(2500)),
        (2, Decimal(5000)),
        (3, Decimal(7500)),
    ]


def test_per_customer_sub_target_values_from_the_audience_file(driver):
    """The "audience with target values" upload sets each customer's target and sub-target values."""
    load(
        driver,
        definition(
            target_values="per_customer",
            enrolment={"method": "specific", "customers": []},
            targets=[target("spend", value=None, sub_targets=[sub("Warm-up", "1000", "absolute")])],
        ),
    )
    send(
        driver,
        enrolment(
            "c1",
            "m1",
            "2024-01-01T00:00:00+05:30",
            targets=[{"target_id": "spend", "value": "8000", "sub_targets": {"Warm-up": "2000"}}],
        ),
    )
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "1500"))
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "600"))
    (event,) = outputs(driver)
    assert (event.milestone_value_defined, event.defined_value) == (Decimal(2000), Decimal(8000))


def test_sub_targets_are_not_sent_immediately_when_awards_on_achievement_are_off(driver):
    load(
        driver,
        definition(
            settings={"award_when_target_achieved": False},
            targets=[target(value="1000", sub_targets=[sub("Half", "50")])],
        ),
    )
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "2000"))
    assert outputs(driver) == []


# ------------------------------------------------------------------ properties
WHOLE_UNIT_KPIS = sorted(WHOLE_NUMBER_KPIS)
percentages = st.decimals(min_value=Decimal("0.01"), max_value=100, places=2)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000).map(Decimal), percentages, st.sampled_from(WHOLE_UNIT_KPIS))
def test_a_percentage_of_a_whole_unit_target_is_the_next_whole_number(target_value, percent, kpi):
    value = percentage_of(target_value, percent, kpi)
    exact = target_value * percent / 100
    assert value == value.to_integral_value()
    assert exact <= value < exact + 1


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=0, max_value=10**9, places=6),
    percentages,
    st.sampled_from(sorted(set(Kpi) - WHOLE_NUMBER_KPIS)),
)
def test_a_percentage_of_an_amount_is_exact_to_the_amounts_precision(target_value, percent, kpi):
    value = percentage_of(target_value, percent, kpi)
    exact = target_value * percent / 100
    assert exact <= value < exact + Decimal("0.000001")
    assert value.as_tuple().exponent >= -6  # an Amount the output schema accepts
    if exact == exact.quantize(Decimal("0.000001")):
        assert value == exact


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 25), percentages)
def test_a_percentage_sub_target_on_a_count_fires_once_at_the_first_count_reaching_it(target_value, percent):
    driver = TopologyTestDriver()
    load(
        driver, definition(targets=[target(kpi="count", value=str(target_value), sub_targets=[sub("P", str(percent))])])
    )
    fired_at = []
    for n in range(1, target_value + 2):
        before = len(driver.read("promotions"))
        send(driver, txn("c1", f"2024-01-{n:02d}T10:00:00+05:30"))
        fired_at += [n for e in outputs(driver)[before:] if e.kind == "sub_target"]
    assert fired_at == [math.ceil(target_value * percent / 100)]
