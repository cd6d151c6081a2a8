"""The KPI tables of "Tracking Configurations": transactional, behavioural, earn reward
currency and other customer-level activities, with the spec's examples."""

from decimal import Decimal

import pytest

from .builders import (
    behavioural,
    bill_return,
    calendar,
    customer_activity,
    definition,
    kinds,
    ledger,
    line,
    load,
    outputs,
    progress,
    send,
    target,
    txn,
)

# --------------------------------------------------------------- transactional


def test_net_vs_gross_a_5000_purchase_paid_3000_after_discount(driver):
    """Gross counts the ₹5000 before discount, net the ₹3000 actually paid."""
    load(
        driver,
        definition("gross", targets=[target("spend", kpi="gross_amount", value="5000")]),
        definition("net", targets=[target("spend", kpi="net_amount", value="5000")]),
    )
    send(driver, txn("c1", "2024-01-10T10:00:00+05:30", "5000", net_amount="3000"))
    assert [(e.milestone_id, e.achieved_value) for e in outputs(driver)] == [("gross", Decimal(5000))]
    assert progress(driver, "c1", "net", "spend", 1) == 3000


def test_net_vs_gross_on_line_items(driver):
    load(
        driver,
        definition("gross", targets=[target("spend", level="line_item", kpi="gross_amount", value="5000")]),
        definition("net", targets=[target("spend", level="line_item", kpi="net_amount", value="5000")]),
    )
    send(
        driver,
        txn(
            "c1",
            "2024-01-10T10:00:00+05:30",
            "5200",
            line_items=[line("P1", "5000", net_amount="3000"), line("P2", "200")],  # P2: no discount
        ),
    )
    assert progress(driver, "c1", "gross", "spend", 1) == 5200
    assert progress(driver, "c1", "net", "spend", 1) == 3200
    assert [e.milestone_id for e in outputs(driver)] == ["gross"]


def test_five_transactions_in_a_week_for_a_premium_badge(driver):
    load(
        driver,
        definition(cycles=calendar("weekly", "2024-01-01", 52), targets=[target("txns", kpi="count", value="5")]),
    )
    days = ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-05", "2024-01-07"]
    send(driver, *(txn("c1", f"{d}T12:00:00+05:30", "1") for d in days[:4]))
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-01-07T23:59:00+05:30", "1"))
    (event,) = outputs(driver)
    assert (event.kind, event.achieved_value, event.defined_value) == ("achievement", Decimal(5), Decimal(5))
    send(driver, txn("c2", "2024-01-07T12:00:00+05:30"), *(txn("c2", "2024-01-08T12:00:00+05:30") for _ in range(4)))
    assert [e.customer_id for e in outputs(driver)] == ["c1"]  # c2's five span two weeks


def test_days_of_activity_purchases_on_three_different_days_in_a_month(driver):
    load(driver, definition(targets=[target("days", kpi="days_of_activity", value="3")]))
    send(
        driver,
        txn("c1", "2024-01-03T09:00:00+05:30"),
        txn("c1", "2024-01-03T21:00:00+05:30"),  # same day: still one day
        txn("c1", "2024-01-10T10:00:00+05:30"),
    )
    assert progress(driver, "c1", "m1", "days", 1) == 2
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-01-31T20:00:00+00:00"))  # 1 Feb in India: February's first day
    assert progress(driver, "c1", "m1", "days", 1) == 2
    send(driver, txn("c1", "2024-01-31T23:30:00+05:30"))
    (event,) = outputs(driver)
    assert (event.achieved_value, event.cycle.index) == (Decimal(3), 1)


def test_product_quantity_12_cans_of_soda(driver):
    load(driver, definition(targets=[target("cans", level="line_item", kpi="quantity", value="12")]))
    send(driver, txn("c1", "2024-01-10T10:00:00+05:30", "600", line_items=[line("SODA", "600", quantity="12")]))
    (event,) = outputs(driver)
    assert event.achieved_value == Decimal(12)


def test_5l_petrol_quantity_of_a_specific_product(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "petrol",
                    level="line_item",
                    kpi="quantity",
                    value="5",
                    filter={"field": "line_item.sku", "op": "eq", "value": "PETROL-PREMIUM"},
                )
            ]
        ),
    )
    send(
        driver,
        txn(
            "c1",
            "2024-01-05T10:00:00+05:30",
            "2500",
            line_items=[line("PETROL-PREMIUM", "300", quantity="2.5"), line("DIESEL", "2200", quantity="20")],
        ),
    )
    assert progress(driver, "c1", "m1", "petrol", 1) == Decimal("2.5")
    send(
        driver,
        txn("c1", "2024-01-25T10:00:00+05:30", "300", line_items=[line("PETROL-PREMIUM", "300", quantity="2.5")]),
    )
    (event,) = outputs(driver)
    assert (event.achieved_value, event.defined_value) == (Decimal(5), Decimal(5))


def test_extended_field_count_three_products_labelled_winter_sale(driver):
    load(
        driver,
        definition(
            targets=[target("winter", level="line_item", kpi="extended_field_count", field="winter_sale", value="3")]
        ),
    )
    labelled = {"extended_fields": {"winter_sale": "yes"}}
    send(
        driver,
        txn(
            "c1",
            "2024-01-05T10:00:00+05:30",
            "400",
            line_items=[line("A", "100", **labelled), line("B", "100", **labelled), line("C", "100")],
        ),
    )
    assert progress(driver, "c1", "m1", "winter", 1) == 2
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "100", line_items=[line("D", "100", **labelled)]))
    assert [(e.kind, e.achieved_value) for e in outputs(driver)] == [("achievement", Decimal(3))]


def test_gold_13_grams_extended_field_sum(driver):
    """13 grams of gold from a specific store in 6 months: a line-item extended field
    summed over a half-yearly cycle, scoped to one store."""
    load(
        driver,
        definition(
            cycles=calendar("half_yearly", "2024-01-01", 2),
            targets=[
                target(
                    "gold",
                    level="line_item",
                    kpi="extended_field_sum",
                    field="gold_grams",
                    value="13",
                    scope={"stores": ["store-mg-road"]},
                )
            ],
        ),
    )
    store = {"store_id": "store-mg-road"}

    def gold(grams):
        return line("GOLD-CHAIN", "50000", extended_fields={"gold_grams": grams})

    send(driver, txn("c1", "2024-01-15T11:00:00+05:30", "50000", line_items=[gold("5.5")], **store))
    send(driver, txn("c1", "2024-03-15T11:00:00+05:30", "90000", line_items=[gold("20")], store_id="store-elsewhere"))
    send(driver, txn("c1", "2024-06-30T11:00:00+05:30", "70000", line_items=[gold("7.5")], **store))
    (event,) = outputs(driver)
    assert (event.achieved_value, event.defined_value, event.cycle.index) == (Decimal(13), Decimal(13), 1)


def test_100k_tax_in_a_year_bill_extended_field_sum(driver):
    load(
        driver,
        definition(
            cycles=calendar("yearly", "2024-01-01", 1),
            targets=[target("tax", kpi="extended_field_sum", field="tax", value="100000")],
        ),
    )
    send(driver, txn("c1", "2024-02-01T10:00:00+05:30", "600000", extended_fields={"tax": "60000"}))
    send(driver, txn("c1", "2024-05-01T10:00:00+05:30", "50000"))  # no tax field: no contribution
    send(driver, txn("c1", "2024-11-01T10:00:00+05:30", "400000", extended_fields={"tax": 40000}))
    (event,) = outputs(driver)
    assert event.achieved_value == Decimal(100000)


def test_sum_of_highest_value_counts_only_6000_of_1000_650_6000(driver):
    """Three purchases on one day worth 1000, 650 and 6000: only 6000 is tracked for
    that day; another day's highest value is added to it."""
    load(
        driver,
        definition(
            targets=[
                target("best", level="line_item", kpi="extended_field_daily_max", field="purchase_value", value="6500")
            ]
        ),
    )

    def purchase(value, when):
        return txn("c1", when, value, line_items=[line("ITEM", value, extended_fields={"purchase_value": value})])

    send(
        driver,
        purchase("1000", "2024-01-10T09:00:00+05:30"),
        purchase("650", "2024-01-10T12:00:00+05:30"),
        purchase("6000", "2024-01-10T18:00:00+05:30"),
    )
    assert progress(driver, "c1", "m1", "best", 1) == 6000
    send(driver, purchase("400", "2024-01-11T09:00:00+05:30"))
    assert progress(driver, "c1", "m1", "best", 1) == 6400
    send(driver, purchase("500", "2024-01-11T10:00:00+05:30"))
    (event,) = outputs(driver)
    assert event.achieved_value == Decimal(6500)


def test_sum_of_highest_value_on_bill_extended_field(driver):
    load(
        driver,
        definition(targets=[target("best", kpi="extended_field_daily_max", field="points_multiplier", value="10")]),
    )
    send(
        driver,
        txn("c1", "2024-01-10T09:00:00+05:30", extended_fields={"points_multiplier": "3"}),
        txn("c1", "2024-01-10T10:00:00+05:30", extended_fields={"points_multiplier": "5"}),
        txn("c1", "2024-01-10T11:00:00+05:30", extended_fields={"points_multiplier": "2"}),
    )
    assert progress(driver, "c1", "m1", "best", 1) == 5


# ----------------------------------------------------------------- behavioural


def test_profile_picture_updated_3_times_a_quarter(driver):
    load(
        driver,
        definition(
            cycles=calendar("quarterly", "2024-01-01", 4),
            targets=[
                target("pic", activity="behavioural_event", kpi="count", event_name="ProfilePictureUpdated", value="3")
            ],
        ),
    )
    send(
        driver,
        behavioural("c1", "ProfilePictureUpdated", "2024-01-05T10:00:00+05:30"),
        behavioural("c1", "ProfileNameUpdated", "2024-01-06T10:00:00+05:30"),  # another event
        behavioural("c1", "ProfilePictureUpdated", "2024-03-31T23:00:00+05:30"),
        behavioural("c1", "ProfilePictureUpdated", "2024-04-01T10:00:00+05:30"),  # next quarter
    )
    assert outputs(driver) == []
    send(driver, behavioural("c1", "ProfilePictureUpdated", "2024-02-01T10:00:00+05:30"))
    (event,) = outputs(driver)
    assert (event.achieved_value, event.cycle.index) == (Decimal(3), 1)


def test_walk_5000_steps_a_week_attribute_sum(driver):
    load(
        driver,
        definition(
            cycles=calendar("weekly", "2024-01-01", 52),
            targets=[
                target(
                    "steps",
                    activity="behavioural_event",
                    kpi="attribute_sum",
                    event_name="Walk",
                    field="steps",
                    value="5000",
                )
            ],
        ),
    )
    send(
        driver,
        behavioural("c1", "Walk", "2024-01-01T07:00:00+05:30", attributes={"steps": 2000}),
        behavioural("c1", "Walk", "2024-01-03T07:00:00+05:30", attributes={"steps": "1500"}),
        behavioural("c1", "Walk", "2024-01-04T07:00:00+05:30", attributes={"distance": "3"}),  # no steps
    )
    assert progress(driver, "c1", "m1", "steps", 1) == 3500
    send(driver, behavioural("c1", "Walk", "2024-01-07T07:00:00+05:30", attributes={"steps": 1500}))
    assert [(e.kind, e.achieved_value) for e in outputs(driver)] == [("achievement", Decimal(5000))]


def test_added_to_cart_sum_of_prices(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "cart",
                    activity="behavioural_event",
                    kpi="attribute_sum",
                    event_name="Added to Cart",
                    field="price",
                    value="7500",
                )
            ]
        ),
    )
    send(
        driver,
        *(
            behavioural("c1", "Added to Cart", "2024-01-05T10:00:00+05:30", attributes={"price": p})
            for p in ("1000", "4000", "2500")
        ),
    )
    (event,) = outputs(driver)
    assert event.achieved_value == Decimal(7500)


def test_added_to_cart_daily_max_counts_4000_of_1000_4000_2500(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "cart",
                    activity="behavioural_event",
                    kpi="attribute_daily_max",
                    event_name="Added to Cart",
                    field="price",
                    value="6000",
                )
            ]
        ),
    )
    send(
        driver,
        *(
            behavioural("c1", "Added to Cart", f"2024-01-05T1{i}:00:00+05:30", attributes={"price": p})
            for i, p in enumerate(("1000", "4000", "2500"))
        ),
    )
    assert progress(driver, "c1", "m1", "cart", 1) == 4000
    assert outputs(driver) == []
    send(driver, behavioural("c1", "Added to Cart", "2024-01-06T10:00:00+05:30", attributes={"price": "2000"}))
    (event,) = outputs(driver)
    assert event.achieved_value == Decimal(6000)


def test_store_visit_days_of_activity(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "visits", activity="behavioural_event", kpi="days_of_activity", event_name="Store Visit", value="2"
                )
            ]
        ),
    )
    send(
        driver,
        behavioural("c1", "Store Visit", "2024-01-05T10:00:00+05:30"),
        behavioural("c1", "Store Visit", "2024-01-05T18:00:00+05:30"),
    )
    assert outputs(driver) == []
    send(driver, behavioural("c1", "Store Visit", "2024-01-09T10:00:00+05:30"))
    assert [e.achieved_value for e in outputs(driver)] == [Decimal(2)]


def test_three_product_reviews_a_quarter(driver):
    load(
        driver,
        definition(
            cycles=calendar("quarterly", "2024-01-01", 4),
            targets=[
                target("reviews", activity="behavioural_event", kpi="count", event_name="Product Reviewed", value="3")
            ],
        ),
    )
    send(driver, *(behavioural("c1", "Product Reviewed", f"2024-0{m}-10T10:00:00+05:30") for m in (4, 5, 6)))
    assert kinds(driver) == [("achievement", "reviews", 2)]


# -------------------------------------------------------- earn reward currency
def _miles(kind: str) -> dict:
    return target(
        f"miles-{kind}",
        activity="currency_earned",
        level=None,
        kpi="currency_earned",
        currency="miles",
        currency_kind=kind,
        value="1000",
    )


def test_airline_miles_regular_promotional_and_both(driver):
    """1,000 miles for the India-Singapore flight (regular) and 2,000 from a 2x
    holiday promotion (promotional): each KPI tracks its own kind, "both" the total."""
    load(
        driver,
        *(definition(f"m-{kind}", targets=[_miles(kind)]) for kind in ("regular", "promotional", "both")),
    )
    send(
        driver,
        ledger("c1", "2024-01-10T10:00:00+05:30", "1000", currency="miles", kind="regular", source="transaction"),
        ledger("c1", "2024-01-12T10:00:00+05:30", "2000", currency="miles", kind="promotional", source="promotion"),
        ledger("c1", "2024-01-13T10:00:00+05:30", "500", currency="points", kind="regular"),  # another currency
        ledger("c1", "2024-01-14T10:00:00+05:30", "-300", currency="miles", kind="regular"),  # a debit is not earned
    )
    assert progress(driver, "c1", "m-regular", "miles-regular", 1) == 1000
    assert progress(driver, "c1", "m-promotional", "miles-promotional", 1) == 2000
    assert progress(driver, "c1", "m-both", "miles-both", 1) == 3000


# ------------------------------------------------- other customer-level activities
def test_refer_7_users_a_year(driver):
    load(
        driver,
        definition(
            cycles=calendar("yearly", "2024-01-01", 2),
            ends_at="2026-01-01T00:00:00+05:30",
            targets=[target("referrals", activity="referral", level=None, kpi="count", value="7")],
        ),
    )
    send(driver, *(customer_activity("c1", "referral", f"2024-{m:02d}-15T10:00:00+05:30") for m in range(1, 7)))
    send(driver, customer_activity("c1", "referral", "2025-01-15T10:00:00+05:30"))  # next year
    send(driver, customer_activity("c1", "coupon_redemption", "2024-08-15T10:00:00+05:30"))  # not a referral
    assert outputs(driver) == []
    send(driver, customer_activity("c1", "referral", "2024-12-31T23:00:00+05:30"))
    (event,) = outputs(driver)
    assert (event.achieved_value, event.cycle.index) == (Decimal(7), 1)


def test_fraud_label_after_10_returns_a_quarter(driver):
    load(
        driver,
        definition(
            cycles=calendar("quarterly", "2024-01-01", 4),
            targets=[target("returns", "Fraud watch", activity="return", level=None, kpi="count", value="10")],
        ),
    )
    send(driver, *(bill_return("c1", f"2024-01-{d:02d}T10:00:00+05:30") for d in range(1, 10)))
    send(driver, bill_return("c1", "2024-04-01T10:00:00+05:30"))  # next quarter
    assert outputs(driver) == []
    send(
        driver,
        bill_return(
            "c1", "2024-03-31T10:00:00+05:30", scope="line_items", line_items=[{"line_id": "l1", "amount": "100"}]
        ),
    )
    (event,) = outputs(driver)
    assert (event.target_name, event.achieved_value, event.cycle.index) == ("Fraud watch", Decimal(10), 1)


def test_redeem_points_5_times_a_quarter(driver):
    load(
        driver,
        definition(
            cycles=calendar("quarterly", "2024-01-01", 4),
            targets=[target("redeem", activity="points_redemption", level=None, kpi="count", value="5")],
        ),
    )
    send(
        driver, *(customer_activity("c1", "points_redemption", f"2024-02-{d:02d}T10:00:00+05:30") for d in range(1, 5))
    )
    send(driver, customer_activity("c1", "points_redemption_reversal", "2024-02-20T10:00:00+05:30"))
    assert outputs(driver) == []
    send(driver, customer_activity("c1", "points_redemption", "2024-03-01T10:00:00+05:30"))
    assert [e.achieved_value for e in outputs(driver)] == [Decimal(5)]


def test_coupon_redemption_days_of_activity(driver):
    load(
        driver,
        definition(
            targets=[target("coupons", activity="coupon_redemption", level=None, kpi="days_of_activity", value="2")]
        ),
    )
    send(
        driver,
        customer_activity("c1", "coupon_redemption", "2024-01-05T10:00:00+05:30"),
        customer_activity("c1", "coupon_redemption", "2024-01-05T11:00:00+05:30"),
        customer_activity("c1", "coupon_redemption", "2024-01-06T11:00:00+05:30"),
    )
    assert [e.achieved_value for e in outputs(driver)] == [Decimal(2)]


@pytest.mark.parametrize(
    "activity",
    [
        "transaction_update",
        "profile_update",
        "promised_points_conversion",
        "points_redemption_reversal",
        "coupon_redemption",
    ],
)
def test_other_customer_level_activities_count_only_their_own_activity(driver, activity):
    load(driver, definition(targets=[target("n", activity=activity, level=None, kpi="count", value="2")]))
    others = [
        "referral",
        "points_redemption",
        "transaction_update",
        "profile_update",
        "coupon_redemption",
        "promised_points_conversion",
        "points_redemption_reversal",
    ]
    send(
        driver, *(customer_activity("c1", other, "2024-01-05T10:00:00+05:30") for other in others if other != activity)
    )
    send(driver, customer_activity("c1", activity, "2024-01-05T10:00:00+05:30"))
    assert outputs(driver) == []
    send(driver, customer_activity("c1", activity, "2024-01-06T10:00:00+05:30"))
    assert [(e.kind, e.achieved_value) for e in outputs(driver)] == [("achievement", Decimal(2))]
