"""Gross amount over a monthly calendar cycle, same target for all, immediate award."""

from decimal import Decimal

from milestream.schemas.outputs import MilestoneEvent
from tests.factories import at, monthly_gross_definition, transaction


def feed(driver, customer, amounts_and_times):
    for n, (amount, when) in enumerate(amounts_and_times):
        driver.pipe("transactions", customer, transaction(customer, amount, when, n), timestamp=at(when))


def test_three_purchases_cross_the_target_once(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    feed(
        driver,
        "c1",
        [
            ("2000", "2024-01-05T10:00:00+05:30"),
            ("1500", "2024-01-10T10:00:00+05:30"),
            ("3000", "2024-01-20T10:00:00+05:30"),
            ("800", "2024-01-25T10:00:00+05:30"),
        ],
    )
    events = [MilestoneEvent.model_validate(e) for e in driver.read("promotions")]
    assert [e.kind for e in events] == ["achievement"]
    achievement = events[0]
    assert achievement.achieved_value == Decimal("6500")
    assert achievement.defined_value == Decimal("5000")
    assert achievement.gap == Decimal("-1500")
    assert achievement.is_target_achieved_event and achievement.achieved
    assert achievement.trigger_names == ["Spend 5000"]
    assert achievement.cycle.index == 1
    assert achievement.cycle.start.isoformat() == "2023-12-31T18:30:00+00:00"  # 1 Jan 00:00 IST
    assert achievement.cycle.end.isoformat() == "2024-01-31T18:30:00+00:00"
    assert achievement.cause == "milestream.transactions/0/2"


def test_reaching_the_target_exactly_counts(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    feed(driver, "c1", [("5000", "2024-01-31T23:59:00+05:30")])
    assert [e["kind"] for e in driver.read("promotions")] == ["achievement"]


def test_progress_resets_each_month(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    # 4,000 in January and 4,000 in February (IST): neither month reaches 5,000.
    feed(driver, "c1", [("4000", "2024-01-31T23:00:00+05:30"), ("4000", "2024-02-01T00:30:00+05:30")])
    assert driver.read("promotions") == []
    feed(driver, "c2", [("3000", "2024-02-02T10:00:00+05:30"), ("2500", "2024-02-03T10:00:00+05:30")])
    events = driver.read("promotions")
    assert [(e["customer_id"], e["cycle"]["index"]) for e in events] == [("c2", 2)]


def test_month_boundary_is_local_midnight(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    # 31 Jan 20:00 UTC is already 1 Feb in India: counts towards February.
    feed(driver, "c1", [("5000", "2024-01-31T20:00:00+00:00")])
    assert driver.read("promotions")[0]["cycle"]["index"] == 2


def test_outside_the_milestone_duration_is_ignored(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    feed(driver, "c1", [("9000", "2023-12-31T23:00:00+05:30"), ("9000", "2025-01-01T00:00:00+05:30")])
    assert driver.read("promotions") == []


def test_each_customer_has_their_own_progress(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    feed(driver, "a", [("3000", "2024-03-01T10:00:00+05:30")])
    feed(driver, "b", [("3000", "2024-03-01T10:00:00+05:30")])
    assert driver.read("promotions") == []
    feed(driver, "a", [("2000", "2024-03-02T10:00:00+05:30")])
    assert [e["customer_id"] for e in driver.read("promotions")] == ["a"]


def test_output_id_is_deterministic_across_runs():
    from milestream.pipeline.driver import TopologyTestDriver

    ids = []
    for _ in range(2):
        run = TopologyTestDriver()
        run.pipe("definitions", "m-monthly", monthly_gross_definition())
        feed(run, "c1", [("6000", "2024-01-05T10:00:00+05:30")])
        ids.append([e["event_id"] for e in run.read("promotions")])
    assert ids[0] == ids[1] and len(ids[0]) == 1
