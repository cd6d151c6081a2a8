"""Filter Activity: scope by store, zone and concept, and rule-based filtering."""

from decimal import Decimal

import pytest

from .builders import (
    behavioural,
    bill_return,
    customer_activity,
    definition,
    ledger,
    line,
    load,
    outputs,
    progress,
    rejection,
    send,
    target,
    txn,
)

WHEN = "2024-01-10T10:00:00+05:30"


def spend(**fields):
    return definition(targets=[target("spend", value="100000", **fields)])


# ----------------------------------------------------------------------- scope
def test_all_stores_zones_and_concepts_when_the_scope_is_empty(driver):
    load(driver, spend())
    send(driver, txn("c1", WHEN, "100", store_id="S9", zone_id="Z9", concept_id="C9"), txn("c1", WHEN, "50"))
    assert progress(driver, "c1", "m1", "spend", 1) == 150


@pytest.mark.parametrize(
    "scope,where,counted",
    [
        ({"stores": ["S1", "S2"]}, {"store_id": "S2"}, True),
        ({"stores": ["S1", "S2"]}, {"store_id": "S3"}, False),
        ({"stores": ["S1"]}, {}, False),  # a purchase with no store is not in a store scope
        ({"zones": ["north"]}, {"store_id": "S7", "zone_id": "north"}, True),
        ({"zones": ["north"]}, {"store_id": "S1", "zone_id": "south"}, False),
        ({"concepts": ["online"]}, {"concept_id": "online"}, True),
        ({"concepts": ["online"]}, {"concept_id": "outlet"}, False),
        ({"stores": ["S1"], "zones": ["north"]}, {"store_id": "S1", "zone_id": "north"}, True),
        ({"stores": ["S1"], "zones": ["north"]}, {"store_id": "S1", "zone_id": "south"}, False),
    ],
)
def test_scope_by_store_zone_and_concept(driver, scope, where, counted):
    load(driver, spend(scope=scope))
    send(driver, txn("c1", WHEN, "100", **where))
    assert progress(driver, "c1", "m1", "spend", 1) == (100 if counted else 0)


def test_scope_applies_to_behavioural_events_too(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "visits",
                    activity="behavioural_event",
                    kpi="count",
                    event_name="Store Visit",
                    value="10",
                    scope={"stores": ["S1"]},
                )
            ]
        ),
    )
    send(
        driver,
        behavioural("c1", "Store Visit", WHEN, store_id="S1"),
        behavioural("c1", "Store Visit", WHEN, store_id="S2"),
    )
    assert progress(driver, "c1", "m1", "visits", 1) == 1


# ---------------------------------------------------------------- rule filters
def _line_spend(rule):
    return spend(level="line_item", filter=rule)


def test_rule_on_category_counts_only_matching_line_items(driver):
    load(driver, _line_spend({"field": "line_item.category", "op": "in", "value": ["accessories", "bags"]}))
    send(
        driver,
        txn(
            "c1",
            WHEN,
            "3300",
            line_items=[
                line("BELT", "800", category="accessories"),
                line("TOTE", "500", category="bags"),
                line("SHOE", "2000", category="footwear"),
            ],
        ),
    )
    assert progress(driver, "c1", "m1", "spend", 1) == 1300


def test_rule_on_sku(driver):
    load(driver, _line_spend({"field": "line_item.sku", "op": "eq", "value": "SKU-1"}))
    send(driver, txn("c1", WHEN, "300", line_items=[line("SKU-1", "100"), line("SKU-2", "200")]))
    assert progress(driver, "c1", "m1", "spend", 1) == 100


def test_rule_on_sku_compares_product_codes_as_text(driver):
    """Decision: product codes are text: "00123" and "123" are different products,
    even though both look like numbers."""
    load(driver, _line_spend({"field": "line_item.sku", "op": "in", "value": ["00123"]}))
    send(driver, txn("c1", WHEN, "300", line_items=[line("00123", "100"), line("123", "200"), line("123.0", "400")]))
    assert progress(driver, "c1", "m1", "spend", 1) == 100


@pytest.mark.parametrize(
    "actual,members",
    [
        ("00123", True),  # text matches text as text
        ("123", False),
        ("5", True),  # a number in the list makes it a numeric comparison
        ("5.0", True),
        (Decimal("5"), True),
        (True, True),  # a boolean matches only a boolean
        (False, False),
        (Decimal("7"), False),
    ],
)
def test_a_list_rule_mixing_text_numbers_and_booleans_compares_each_member_by_its_kind(actual, members):
    from milestream.engine.filters import compile_filter
    from milestream.schemas.filters import Condition

    found = compile_filter(Condition(field="transaction.x", op="in", value=["00123", 5, True]))
    missing = compile_filter(Condition(field="transaction.x", op="not_in", value=["00123", 5, True]))
    assert found({"transaction": {"x": actual}}) is members
    assert missing({"transaction": {"x": actual}}) is not members
    assert missing({"transaction": {}}) is True  # a missing field is in no list


def test_rule_on_line_item_attributes(driver):
    load(driver, _line_spend({"field": "line_item.attributes.colour", "op": "eq", "value": "red"}))
    send(
        driver,
        txn(
            "c1",
            WHEN,
            "300",
            line_items=[
                line("A", "100", attributes={"colour": "red"}),
                line("B", "200", attributes={"colour": "blue"}),
                line("C", "400"),
            ],
        ),
    )
    assert progress(driver, "c1", "m1", "spend", 1) == 100


@pytest.mark.parametrize(
    "op,bound,amounts,expected",
    [
        ("gte", "500", ["499.99", "500", "1200"], 2),  # minimum purchase amount
        ("lte", "10000", ["10000", "10000.01", "20"], 2),  # maximum purchase amount
    ],
)
def test_rule_on_transaction_amount_min_and_max(driver, op, bound, amounts, expected):
    load(
        driver,
        definition(
            targets=[
                target(
                    "txns",
                    kpi="count",
                    value="10",
                    filter={"field": "transaction.gross_amount", "op": op, "value": bound},
                )
            ]
        ),
    )
    send(driver, *(txn("c1", WHEN, amount) for amount in amounts))
    assert progress(driver, "c1", "m1", "txns", 1) == expected


def test_rule_on_transaction_amount_applies_to_line_item_targets(driver):
    load(driver, _line_spend({"field": "transaction.gross_amount", "op": "gte", "value": 1000}))
    send(driver, txn("c1", WHEN, "999", line_items=[line("A", "999")]))
    send(driver, txn("c1", WHEN, "1500", line_items=[line("A", "700"), line("B", "800")]))
    assert progress(driver, "c1", "m1", "spend", 1) == 1500


def test_rule_on_net_amount_uses_the_gross_when_no_discount_was_given(driver):
    """A bill without ``net_amount`` was paid in full: its net amount is its gross
    amount, for rules exactly as for the net-amount KPI."""
    load(
        driver,
        definition(
            targets=[
                target(
                    "txns",
                    kpi="count",
                    value="10",
                    filter={"field": "transaction.net_amount", "op": "gte", "value": "1000"},
                )
            ]
        ),
    )
    send(driver, txn("c1", WHEN, "1500"), txn("c1", WHEN, "1500", net_amount="900"), txn("c1", WHEN, "800"))
    assert progress(driver, "c1", "m1", "txns", 1) == 1


def test_rule_on_line_net_amount_uses_the_gross_when_no_discount_was_given(driver):
    load(driver, _line_spend({"field": "line_item.net_amount", "op": "gte", "value": "100"}))
    send(driver, txn("c1", WHEN, "350", line_items=[line("A", "150"), line("B", "200", net_amount="50")]))
    assert progress(driver, "c1", "m1", "spend", 1) == 150


def test_rule_on_transaction_extended_field(driver):
    load(driver, spend(filter={"field": "transaction.extended_fields.channel", "op": "eq", "value": "online"}))
    send(
        driver,
        txn("c1", WHEN, "100", extended_fields={"channel": "online"}),
        txn("c1", WHEN, "200", extended_fields={"channel": "store"}),
        txn("c1", WHEN, "400"),
    )
    assert progress(driver, "c1", "m1", "spend", 1) == 100


def test_rule_on_line_item_extended_field(driver):
    load(driver, _line_spend({"field": "line_item.extended_fields.season", "op": "eq", "value": "winter"}))
    send(
        driver,
        txn(
            "c1",
            WHEN,
            "300",
            line_items=[
                line("A", "100", extended_fields={"season": "winter"}),
                line("B", "200", extended_fields={"season": "summer"}),
            ],
        ),
    )
    assert progress(driver, "c1", "m1", "spend", 1) == 100


def test_rule_on_numeric_extended_field_compares_numbers(driver):
    load(driver, _line_spend({"field": "line_item.extended_fields.karat", "op": "gte", "value": 22}))
    send(
        driver,
        txn(
            "c1",
            WHEN,
            "700",
            line_items=[
                line("A", "100", extended_fields={"karat": "24"}),
                line("B", "200", extended_fields={"karat": 18}),
                line("C", "400", extended_fields={"karat": "22.0"}),
            ],
        ),
    )
    assert progress(driver, "c1", "m1", "spend", 1) == 500


def test_rule_on_behavioural_event_attributes(driver):
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
                    value="100000",
                    filter={
                        "all": [
                            {"field": "event.attributes.platform", "op": "eq", "value": "app"},
                            {"field": "event.attributes.price", "op": "gt", "value": 500},
                        ]
                    },
                )
            ]
        ),
    )
    send(
        driver,
        behavioural("c1", "Added to Cart", WHEN, attributes={"platform": "app", "price": 1000}),
        behavioural("c1", "Added to Cart", WHEN, attributes={"platform": "web", "price": 2000}),
        behavioural("c1", "Added to Cart", WHEN, attributes={"platform": "app", "price": "400"}),
        behavioural("c1", "Added to Cart", WHEN, attributes={"platform": "app", "price": "4000"}),
    )
    assert progress(driver, "c1", "m1", "cart", 1) == 5000


def test_rule_on_customer_activity_attributes(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "refs",
                    activity="referral",
                    level=None,
                    kpi="count",
                    value="7",
                    filter={"field": "event.attributes.status", "op": "eq", "value": "joined"},
                )
            ]
        ),
    )
    send(
        driver,
        customer_activity("c1", "referral", WHEN, attributes={"status": "joined"}),
        customer_activity("c1", "referral", WHEN, attributes={"status": "invited"}),
    )
    assert progress(driver, "c1", "m1", "refs", 1) == 1


def test_rule_on_returns_counts_only_matching_returns(driver):
    """A rule on a return target applies like any other: here only whole-bill returns count."""
    load(
        driver,
        definition(
            targets=[
                target(
                    "returns",
                    activity="return",
                    level=None,
                    kpi="count",
                    value="10",
                    filter={"field": "event.scope", "op": "eq", "value": "bill"},
                )
            ]
        ),
    )
    send(
        driver,
        bill_return("c1", WHEN),
        bill_return("c1", WHEN, scope="line_items", line_items=[{"line_id": "l1", "amount": "10"}]),
    )
    assert progress(driver, "c1", "m1", "returns", 1) == 1


def test_rule_on_ledger_entry_source(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "pts",
                    activity="currency_earned",
                    level=None,
                    kpi="currency_earned",
                    value="1000",
                    filter={"field": "entry.source", "op": "ne", "value": "adjustment"},
                )
            ]
        ),
    )
    send(
        driver,
        ledger("c1", WHEN, "100", source="transaction"),
        ledger("c1", WHEN, "900", source="adjustment", reason="goodwill", actor="agent-7"),
    )
    assert progress(driver, "c1", "m1", "pts", 1) == 100


def test_rule_combinators_any_and_not(driver):
    rule = {
        "any": [
            {"field": "line_item.category", "op": "eq", "value": "bags"},
            {"not": {"field": "line_item.attributes.brand", "op": "in", "value": ["acme", "generic"]}},
        ]
    }
    load(driver, _line_spend(rule))
    send(
        driver,
        txn(
            "c1",
            WHEN,
            "1111",
            line_items=[
                line("A", "1", category="bags", attributes={"brand": "acme"}),  # bags
                line("B", "10", category="shoes", attributes={"brand": "acme"}),  # neither
                line("C", "100", category="shoes", attributes={"brand": "luxe"}),  # not acme/generic
                line("D", "1000", category="shoes"),  # no brand: not in the list
            ],
        ),
    )
    assert progress(driver, "c1", "m1", "spend", 1) == 1101


def test_a_bill_whose_line_items_all_fail_the_rule_does_not_count(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "qty",
                    level="line_item",
                    kpi="quantity",
                    value="5",
                    filter={"field": "line_item.category", "op": "eq", "value": "fuel"},
                )
            ]
        ),
    )
    send(driver, txn("c1", WHEN, "100", line_items=[line("SNACK", "100", category="food", quantity="3")]))
    assert progress(driver, "c1", "m1", "qty", 1) == 0
    assert outputs(driver) == []


# ---------------------------------------------------------- rule / level errors
def test_line_item_rule_on_a_bill_level_target_is_an_error(driver):
    detail = rejection(driver, spend(filter={"field": "line_item.category", "op": "eq", "value": "shoes"}))
    assert "line_item.category" in detail and "needs level 'line_item'" in detail


def test_transaction_rule_on_a_behavioural_target_is_an_error(driver):
    body = definition(
        targets=[
            target(
                "b",
                activity="behavioural_event",
                kpi="count",
                event_name="Visit",
                value="1",
                filter={"field": "transaction.store_id", "op": "eq", "value": "S1"},
            )
        ]
    )
    assert "only applies to transaction targets" in rejection(driver, body)


def test_rule_comparing_a_non_number_with_gt_is_an_error(driver):
    detail = rejection(driver, spend(filter={"field": "transaction.gross_amount", "op": "gt", "value": "lots"}))
    assert "must be a number" in detail


def test_rule_on_an_unknown_root_is_an_error(driver):
    detail = rejection(driver, spend(filter={"field": "customer.tier", "op": "eq", "value": "gold"}))
    assert "unknown field 'customer.tier'" in detail


def test_line_item_level_target_with_rule_still_reaches_target(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "acc",
                    level="line_item",
                    value="1000",
                    filter={"field": "line_item.category", "op": "eq", "value": "accessories"},
                )
            ]
        ),
    )
    send(driver, txn("c1", WHEN, "5000", line_items=[line("BAG", "1000", category="accessories"), line("TV", "4000")]))
    (event,) = outputs(driver)
    assert event.achieved_value == Decimal(1000)
