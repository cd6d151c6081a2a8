"""The spec's "Configuring Milestone Settings" examples: returns, buffer days, mid-cycle enrolment.

Every example: earn 100 points for a monthly spend of ₹5,000; the cycle resets on the 1st.
"""

from decimal import Decimal

import pytest

from tests.engine.builders import (
    bill_return,
    close,
    closes,
    customer_state,
    definition,
    enrolment,
    kinds,
    line,
    load,
    outputs,
    progress,
    send,
    target,
    txn,
)

JAN_31 = "2024-01-31T18:00:00+05:30"


def monthly(**settings):
    return definition(targets=[target(value="5000")], settings=settings)


def three_purchases(driver):
    """₹2,000, ₹1,500 and ₹3,000 in January: eligible after the third."""
    bills = [txn("c1", "2024-01-05T10:00:00+05:30", gross) for gross in ("2000", "1500", "3000")]
    send(driver, *bills)
    assert kinds(driver) == [("achievement", "t1", 1)]
    return bills


# ------------------------------------------------------------- whole-bill returns
def test_whole_bill_return_setting_enabled_february_starts_at_minus_3000(driver):
    load(driver, monthly(adjust_on_bill_return=True))
    bills = three_purchases(driver)
    send(driver, bill_return("c1", JAN_31, bill_id=bills[2]["bill_id"]))
    # The award earned in January stands: no event, January's progress unchanged.
    assert kinds(driver) == [("achievement", "t1", 1)]
    assert progress(driver, "c1", "m1", "t1", 1) == Decimal("6500")
    send(driver, txn("c1", "2024-02-03T10:00:00+05:30", "1000"))
    assert progress(driver, "c1", "m1", "t1", 2) == Decimal("-2000")
    send(driver, txn("c1", "2024-02-10T10:00:00+05:30", "6999"))
    assert kinds(driver) == [("achievement", "t1", 1)]  # ₹7,999 of the ₹8,000 needed
    send(driver, txn("c1", "2024-02-11T10:00:00+05:30", "1"))
    assert kinds(driver)[-1] == ("achievement", "t1", 2)


def test_whole_bill_return_setting_disabled_nothing_is_adjusted(driver):
    load(driver, monthly(adjust_on_bill_return=False))
    bills = three_purchases(driver)
    send(driver, bill_return("c1", JAN_31, bill_id=bills[2]["bill_id"]))
    send(driver, txn("c1", "2024-02-03T10:00:00+05:30", "5000"))
    assert kinds(driver) == [("achievement", "t1", 1), ("achievement", "t1", 2)]


def test_whole_bill_return_on_a_count_target_starts_the_next_cycle_one_transaction_down(driver):
    load(driver, definition(targets=[target(kpi="count", value="2")], settings={"adjust_on_bill_return": True}))
    first = txn("c1", "2024-01-05T10:00:00+05:30")
    send(driver, first, bill_return("c1", "2024-01-20T10:00:00+05:30", bill_id=first["bill_id"]))
    send(driver, txn("c1", "2024-02-03T10:00:00+05:30"), txn("c1", "2024-02-04T10:00:00+05:30"))
    assert progress(driver, "c1", "m1", "t1", 2) == Decimal("1")
    assert kinds(driver) == []


def test_a_return_in_a_later_cycle_adjusts_the_cycle_it_arrives_in(driver):
    """The "next cycle" of a January bill returned in March is March: February is over."""
    load(driver, monthly(adjust_on_bill_return=True))
    bill = txn("c1", "2024-01-05T10:00:00+05:30", "3000")
    send(driver, bill, txn("c1", "2024-03-02T10:00:00+05:30", "100"))
    send(driver, bill_return("c1", "2024-03-05T10:00:00+05:30", bill_id=bill["bill_id"]))
    assert progress(driver, "c1", "m1", "t1", 3) == Decimal("-2900")


def test_the_same_return_sent_twice_adjusts_once(driver):
    load(driver, monthly(adjust_on_bill_return=True))
    bill = txn("c1", "2024-01-05T10:00:00+05:30", "3000")
    ret = bill_return("c1", JAN_31, bill_id=bill["bill_id"])
    send(driver, bill, ret, {**ret, "event_id": "resent"})
    send(driver, txn("c1", "2024-02-03T10:00:00+05:30", "100"))
    assert progress(driver, "c1", "m1", "t1", 2) == Decimal("-2900")


# ------------------------------------------------------------- line-item returns
def yoga_bill():
    lines = [
        line("yoga-mat", "1000", line_id="mat-1"),
        line("yoga-mat", "1000", line_id="mat-2"),
        line("bottle", "750", line_id="bottle-1"),
        line("bottle", "750", line_id="bottle-2"),
        line("shoes", "3000", line_id="shoes"),
    ]
    return txn("c1", "2024-01-10T10:00:00+05:30", "6500", line_items=lines)


def line_return(bill):
    return bill_return(
        "c1",
        JAN_31,
        bill_id=bill["bill_id"],
        scope="line_items",
        line_items=[{"line_id": "mat-1", "amount": "1000"}, {"line_id": "bottle-1", "amount": "750"}],
    )


def test_line_item_return_prorate_february_starts_at_minus_1346_15(driver):
    load(driver, monthly(line_item_return="prorate"))
    bill = yoga_bill()
    send(driver, bill, line_return(bill))
    send(driver, txn("c1", "2024-02-03T10:00:00+05:30", "1000"))
    # ₹1,750 of ₹6,500 is 26.9%; ₹5,000 × 1,750 / 6,500 = ₹1,346.15.
    assert progress(driver, "c1", "m1", "t1", 2) == Decimal("-346.15")
    send(driver, txn("c1", "2024-02-04T10:00:00+05:30", "5346.14"))
    assert kinds(driver) == [("achievement", "t1", 1)]  # ₹6,346.14 of the ₹6,346.15 needed
    send(driver, txn("c1", "2024-02-05T10:00:00+05:30", "0.01"))
    assert kinds(driver)[-1] == ("achievement", "t1", 2)


def test_line_item_return_do_not_adjust_ignores_the_return(driver):
    load(driver, monthly(line_item_return="ignore", adjust_on_bill_return=True))
    bill = yoga_bill()
    send(driver, bill, line_return(bill), txn("c1", "2024-02-03T10:00:00+05:30", "5000"))
    assert kinds(driver) == [("achievement", "t1", 1), ("achievement", "t1", 2)]


def test_prorate_uses_each_customers_own_target(driver):
    load(
        driver,
        definition(
            targets=[target(value=None)], target_values="per_customer", settings={"line_item_return": "prorate"}
        ),
    )
    send(driver, enrolment("c1", "m1", "2024-01-01T10:00:00+05:30", targets=[{"target_id": "t1", "value": "13000"}]))
    bill = yoga_bill()
    send(driver, bill, line_return(bill), txn("c1", "2024-02-03T10:00:00+05:30", "1"))
    assert progress(driver, "c1", "m1", "t1", 2) == Decimal("-3499")  # 13,000 × 1,750 / 6,500 = 3,500


# ----------------------------------------------------------------- bills kept
def test_a_return_for_an_unknown_bill_is_recorded_with_its_reason(driver):
    load(driver, monthly(adjust_on_bill_return=True))
    send(driver, bill_return("c1", JAN_31, bill_id="never-seen"))
    [record] = driver.read("late-events")
    assert (record["type"], record["reason"], record["bill_id"]) == ("unmatched_return", "bill_unknown", "never-seen")


def test_a_return_for_a_bill_past_retention_is_recorded_as_expired(driver):
    driver.pipe(
        "definitions",
        "settings:default",
        {
            "type": "organisation_settings",
            "org_id": "default",
            "bill_retention_days": 30,
            "adjust_on_bill_return": True,
        },
    )
    load(driver, monthly())
    old = txn("c1", "2024-01-05T10:00:00+05:30", "3000")
    send(driver, old, txn("c1", "2024-02-20T10:00:00+05:30", "100"))  # 46 days later: the January bill expires
    send(driver, bill_return("c1", "2024-02-21T10:00:00+05:30", bill_id=old["bill_id"]))
    [record] = driver.read("late-events")
    assert record["reason"] == "bill_expired"
    assert progress(driver, "c1", "m1", "t1", 3) == Decimal("0")


def test_bills_are_kept_only_for_milestones_that_adjust_on_returns(driver):
    load(driver, monthly())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "3000"))
    assert "b" not in customer_state(driver, "c1")


def test_returns_still_count_as_an_activity(driver):
    load(
        driver,
        definition(
            targets=[target(activity="return", level=None, kpi="count", value="2")],
            settings={"adjust_on_bill_return": True},
        ),
    )
    send(driver, bill_return("c1", "2024-01-05T10:00:00+05:30"), bill_return("c1", "2024-01-06T10:00:00+05:30"))
    assert kinds(driver) == [("achievement", "t1", 1)]


# ------------------------------------------------------------------ buffer days
def test_buffer_days_hold_the_close_until_the_buffer_has_elapsed(driver):
    """A 31 Jan purchase recorded on 3 Feb counts for January: the January close waits 5 days."""
    load(driver, monthly(buffer_days=5))
    send(driver, txn("c1", "2024-01-20T10:00:00+05:30", "1000"))
    close(driver, "2024-02-04T00:00:00+05:30")
    assert closes(driver) == []
    send(driver, txn("c1", "2024-01-31T10:00:00+05:30", "4000"), timestamp="2024-02-03T10:00:00+05:30")
    close(driver, "2024-02-06T00:00:00+05:30")
    assert closes(driver) == [("c1", 1, "5000")]
    assert kinds(driver) == [("achievement", "t1", 1), ("cycle_close", "t1", 1)]


def test_after_the_close_a_late_purchase_is_recorded_not_counted(driver):
    load(driver, monthly(buffer_days=5))
    send(driver, txn("c1", "2024-01-20T10:00:00+05:30", "1000"))
    close(driver, "2024-02-06T00:00:00+05:30")
    send(driver, txn("c1", "2024-01-31T10:00:00+05:30", "4000"), timestamp="2024-02-07T10:00:00+05:30")
    assert [r["type"] for r in driver.read("late-events")] == ["late_event"]
    assert closes(driver) == [("c1", 1, "1000")]


# ------------------------------------------------------------ mid-cycle enrolment
@pytest.mark.parametrize("method", ["none", "specific"])
def test_mid_cycle_enrolment_counts_earlier_activity_by_default(driver, method):
    """₹2,000 on 1 Feb, enrolled on 10 Feb: the ₹2,000 counts (the default)."""
    load(driver, definition(targets=[target(value="5000")], enrolment={"method": method}))
    send(driver, txn("c1", "2024-02-01T10:00:00+05:30", "2000"))
    send(driver, enrolment("c1", "m1", "2024-02-10T10:00:00+05:30"))
    send(driver, txn("c1", "2024-02-12T10:00:00+05:30", "3000"))
    assert kinds(driver) == [("achievement", "t1", 2)]
    assert progress(driver, "c1", "m1", "t1", 2) == Decimal("5000")


def test_mid_cycle_enrolment_with_track_from_enrolment_ignores_earlier_activity(driver):
    load(
        driver,
        definition(
            targets=[target(value="5000")], enrolment={"method": "none"}, settings={"track_from_enrolment": True}
        ),
    )
    send(driver, txn("c1", "2024-02-01T10:00:00+05:30", "2000"))
    send(driver, enrolment("c1", "m1", "2024-02-10T10:00:00+05:30"))
    send(driver, txn("c1", "2024-02-12T10:00:00+05:30", "3000"))
    assert kinds(driver) == []
    assert progress(driver, "c1", "m1", "t1", 2) == Decimal("3000")


def test_enrolling_after_reaching_the_target_awards_at_enrolment(driver):
    load(driver, definition(targets=[target(value="5000")], enrolment={"method": "none"}))
    send(driver, txn("c1", "2024-02-01T10:00:00+05:30", "6000"))
    assert kinds(driver) == []
    processed = send(driver, enrolment("c1", "m1", "2024-02-10T10:00:00+05:30"))
    assert kinds(driver) == [("achievement", "t1", 2)]
    assert outputs(driver)[0].cause.startswith(processed.records[0].topic) is False  # cause is the enrolment record
    assert "enrolments" in outputs(driver)[0].cause


def test_activity_in_an_earlier_cycle_does_not_count_for_a_later_enrolment(driver):
    load(driver, definition(targets=[target(value="5000")], enrolment={"method": "none"}))
    send(driver, txn("c1", "2024-01-20T10:00:00+05:30", "6000"))
    send(driver, enrolment("c1", "m1", "2024-02-10T10:00:00+05:30"))
    assert kinds(driver) == []
    assert "1" not in customer_state(driver, "c1")["m"]["m1"]["c"]
