"""What a promotion rule reads from Milestream's events (the spec's ``currentEvent``
fields), target values per cycle and per customer, award timing and cloning."""

from decimal import Decimal

from milestream.engine.ids import milestone_event_id

from .builders import (
    calendar,
    custom,
    definition,
    enrolment,
    kinds,
    line,
    load,
    outputs,
    progress,
    send,
    target,
    till_achieved,
    txn,
)


def abc(**fields) -> dict:
    return definition(
        "abc", name="ABC", till_code="till-01", targets=[target("abc-spend", "ABC", value="500")], **fields
    )


def test_achievement_event_carries_every_rule_field_exactly(driver):
    """targetAchieved 700 against targetDefined 500: targetGaps is targetDefined minus
    targetAchieved, -200 (decision: negative once the target is exceeded)."""
    load(driver, abc())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "700"))
    (raw,) = driver.read("promotions")
    assert raw == {
        "type": "milestone_event",
        "schema_version": 1,
        "event_id": milestone_event_id("abc", "abc-spend", "c1", 1, "achievement"),
        "kind": "achievement",
        "customer_id": "c1",
        "org_id": "default",
        "milestone_id": "abc",
        "milestone_name": "ABC",
        "till_code": "till-01",
        "target_id": "abc-spend",
        "target_name": "ABC",  # currentEvent.targetName
        "cycle": {  # currentEvent.targetPeriod is the cycle's name
            "index": 1,
            "name": "ABC #1",
            "start": "2023-12-31T18:30:00.000000Z",
            "end": "2024-01-31T18:30:00.000000Z",
        },
        "achieved_value": "700",  # currentEvent.targetAchieved
        "defined_value": "500",  # currentEvent.targetDefined
        "gap": "-200",  # currentEvent.targetGaps
        "achieved": True,
        "is_target_achieved_event": True,  # currentEvent.isTargetAchievedEvent
        "milestone_value_defined": None,  # currentEvent.milestoneValueDefined: sub-targets only
        "trigger_names": ["ABC"],  # currentEvent.targetMilestoneTrigger
        "targets": [
            {
                "target_id": "abc-spend",
                "target_name": "ABC",
                "achieved_value": "700",
                "defined_value": "500",
                "gap": "-200",
                "achieved": True,
                "overall": False,
            }
        ],
        "occurred_at": "2024-01-05T04:30:00.000000Z",
        "cause": "milestream.transactions/0/0",
    }


def test_target_achieved_greater_than_target_defined_rule_holds_on_the_achievement(driver):
    load(driver, abc())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "300"), txn("c1", "2024-01-06T10:00:00+05:30", "250"))
    (event,) = outputs(driver)
    # currentEvent.targetAchieved("ABC") > currentEvent.targetDefined("ABC") && isTargetAchievedEvent
    assert event.achieved_value > event.defined_value and event.is_target_achieved_event
    assert (event.achieved_value, event.gap) == (Decimal(550), Decimal(-50))


def test_reaching_the_target_exactly_is_an_achievement(driver):
    """The spec words the immediate event as "targetAchieved > targetDefined" but also
    as reaching the target. Decision: reaching it exactly (gap 0) is an achievement,
    as a customer who spends exactly the ₹5000 asked for would expect."""
    load(driver, abc())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "499.99"))
    assert outputs(driver) == []
    send(driver, txn("c1", "2024-01-05T11:00:00+05:30", "0.01"))
    (event,) = outputs(driver)
    assert (event.achieved_value, event.defined_value, event.gap, event.achieved) == (
        Decimal(500),
        Decimal(500),
        Decimal(0),
        True,
    )


def test_sub_target_event_fields_abc1_at_30_and_abc2_at_60(driver):
    load(
        driver,
        definition(
            targets=[
                target(
                    "t",
                    "ABC",
                    value="1000",
                    sub_targets=[
                        {"name": "ABC1", "criterion": "percentage", "value": "30"},
                        {"name": "ABC2", "criterion": "percentage", "value": "60"},
                    ],
                )
            ]
        ),
    )
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "350"), txn("c1", "2024-01-06T10:00:00+05:30", "300"))
    abc1, abc2 = outputs(driver)
    assert "ABC1" in abc1.trigger_names and "ABC2" not in abc1.trigger_names
    assert "ABC2" in abc2.trigger_names
    assert (abc1.kind, abc1.is_target_achieved_event, abc1.milestone_value_defined) == (
        "sub_target",
        False,
        Decimal(300),
    )
    assert (abc2.milestone_value_defined, abc2.achieved_value, abc2.gap) == (Decimal(600), Decimal(650), Decimal(350))
    assert abc1.target_name == abc2.target_name == "ABC"
    assert abc1.event_id == milestone_event_id("m1", "t", "c1", 1, "sub_target:ABC1")


def test_target_period_names_each_period(driver):
    """Period X, Y, Z of milestone ABC: currentEvent.targetPeriod.contains("X")."""
    load(
        driver,
        definition(
            name="ABC",
            cycles=custom(
                ("X", "2024-01-01", "2024-01-31"), ("Y", "2024-02-01", "2024-02-29"), ("Z", "2024-03-01", "2024-03-31")
            ),
            targets=[target(value="100")],
        ),
    )
    send(driver, *(txn("c1", f"2024-0{m}-10T10:00:00+05:30", "100") for m in (1, 2, 3)))
    assert [e.cycle.name for e in outputs(driver)] == ["X", "Y", "Z"]


def test_different_target_value_per_cycle_5000_10000_15000(driver):
    load(
        driver,
        definition(
            cycles=calendar("monthly", "2024-01-01", 3),
            targets=[target(value=None, values_per_cycle=["5000", "10000", "15000"])],
        ),
    )
    send(
        driver,
        txn("c1", "2024-01-10T10:00:00+05:30", "6000"),
        txn("c1", "2024-02-10T10:00:00+05:30", "6000"),  # not enough in February
        txn("c1", "2024-03-10T10:00:00+05:30", "15000"),
    )
    assert [(e.cycle.index, e.defined_value, e.achieved_value) for e in outputs(driver)] == [
        (1, Decimal(5000), Decimal(6000)),
        (3, Decimal(15000), Decimal(15000)),
    ]
    assert progress(driver, "c1", "m1", "t1", 2) == 6000


def test_different_target_for_each_customer_from_enrolment(driver):
    """Target values per customer ("audience with target values"), optionally per cycle."""
    load(
        driver,
        definition(
            target_values="per_customer",
            cycles=calendar("monthly", "2024-01-01", 3),
            enrolment={"method": "specific", "customers": []},
            targets=[target("spend", value=None)],
        ),
    )
    send(
        driver,
        enrolment("a", "m1", "2024-01-01T00:00:00+05:30", targets=[{"target_id": "spend", "value": "3000"}]),
        enrolment(
            "b",
            "m1",
            "2024-01-01T00:00:00+05:30",
            targets=[
                {"target_id": "spend", "value": "2000"},
                {"target_id": "spend", "value": "1000", "cycle": 1},
            ],
        ),
    )
    send(
        driver,
        txn("a", "2024-01-10T10:00:00+05:30", "2500"),
        txn("b", "2024-01-10T10:00:00+05:30", "1000"),
        txn("b", "2024-02-10T10:00:00+05:30", "1500"),
        txn("not-enrolled", "2024-01-10T10:00:00+05:30", "99999"),
    )
    assert [(e.customer_id, e.cycle.index, e.defined_value) for e in outputs(driver)] == [("b", 1, Decimal(1000))]
    send(driver, txn("a", "2024-01-20T10:00:00+05:30", "500"), txn("b", "2024-02-20T10:00:00+05:30", "500"))
    assert [(e.customer_id, e.cycle.index, e.defined_value) for e in outputs(driver)][1:] == [
        ("a", 1, Decimal(3000)),
        ("b", 2, Decimal(2000)),
    ]


def test_customer_without_an_uploaded_target_value_never_achieves(driver):
    """Decision: with a different target for each customer, a customer enrolled without
    a target value has no target: their activity is tracked, nothing is achieved."""
    load(
        driver,
        definition(
            target_values="per_customer",
            targets=[
                target("spend", value=None, sub_targets=[{"name": "Start", "criterion": "absolute", "value": "100"}])
            ],
        ),
    )
    send(driver, txn("c1", "2024-01-10T10:00:00+05:30", "500"))
    assert outputs(driver) == []
    assert progress(driver, "c1", "m1", "spend", 1) == 500


def test_awards_when_target_achieved_off_sends_nothing_immediately(driver):
    """ENABLE_AWARD_WHEN_TARGET_ACHIEVED inactive for the organisation: no immediate event."""
    driver.pipe(
        "definitions",
        "settings:default",
        {"type": "organisation_settings", "org_id": "default", "award_when_target_achieved": False},
    )
    load(driver, abc())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "700"))
    assert outputs(driver) == []
    assert progress(driver, "c1", "abc", "abc-spend", 1) == 700


def test_milestone_setting_overrides_the_organisation_award_setting(driver):
    driver.pipe(
        "definitions",
        "settings:default",
        {"type": "organisation_settings", "org_id": "default", "award_when_target_achieved": False},
    )
    load(driver, abc(settings={"award_when_target_achieved": True}))
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "700"))
    assert kinds(driver) == [("achievement", "abc-spend", 1)]


def test_till_achieved_cycle_close_is_sent_even_when_immediate_awards_are_off(driver):
    load(driver, abc(cycles=till_achieved(), settings={"award_when_target_achieved": False}))
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "700"))
    (close,) = outputs(driver)
    assert (close.kind, close.is_target_achieved_event, close.achieved, close.achieved_value) == (
        "cycle_close",
        False,
        True,
        Decimal(700),
    )


def test_unified_group_names_the_milestone_on_its_own_achievement(driver):
    load(
        driver,
        definition(
            name="Cross-sell",
            targets=[
                target(
                    "men",
                    "Men 1000",
                    level="line_item",
                    value="1000",
                    filter={"field": "line_item.category", "op": "eq", "value": "men"},
                ),
                target(
                    "women",
                    "Women 1000",
                    level="line_item",
                    value="1000",
                    filter={"field": "line_item.category", "op": "eq", "value": "women"},
                ),
            ],
        ),
    )
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "1200", line_items=[line("M", "1200", category="men")]))
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "1000", line_items=[line("W", "1000", category="women")]))
    events = outputs(driver)
    assert [(e.kind, e.target_id, e.target_name) for e in events] == [
        ("achievement", "men", "Men 1000"),
        ("achievement", "women", "Women 1000"),
        ("achievement", "group", "Cross-sell"),
    ]
    group = events[-1]
    assert (group.achieved_value, group.defined_value) == (Decimal(2), Decimal(2))
    assert [(t.target_id, t.achieved_value, t.achieved) for t in group.targets] == [
        ("men", Decimal(1200), True),
        ("women", Decimal(1000), True),
    ]


def test_cloning_jaffna_gross_milestone_to_net_tracks_independently(driver):
    """Jaffna clones "$100 gross sales a month, 5 cycles" and changes only the KPI to net."""
    original = definition(
        "jaffna-gross",
        name="Jaffna gross",
        cycles=calendar("monthly", "2024-01-01", 5),
        targets=[target("sales", "Jaffna 100", kpi="gross_amount", value="100")],
    )
    clone = {
        **original,
        "milestone_id": "jaffna-net",
        "name": "Jaffna net",
        "group": {"targets": [{**original["group"]["targets"][0], "kpi": "net_amount"}]},
    }
    load(driver, original, clone)
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "120", net_amount="90"))
    assert [e.milestone_id for e in outputs(driver)] == ["jaffna-gross"]
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "10"))
    events = outputs(driver)
    assert [e.milestone_id for e in events] == ["jaffna-gross", "jaffna-net"]
    assert events[0].event_id != events[1].event_id
    assert progress(driver, "c1", "jaffna-net", "sales", 1) == 100


def test_inactive_milestone_tracks_nothing(driver):
    load(driver, abc(active=False))
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "700"))
    assert outputs(driver) == []
    assert progress(driver, "c1", "abc", "abc-spend", 1) == 0
