"""Lifecycle commands on the definitions topic, through the topology."""

from datetime import datetime, timezone

import orjson

from tests.factories import at, monthly_gross_definition, transaction

WHEN = "2024-01-05T10:00:00+05:30"
DURING = at("2024-03-01T00:00:00+00:00")
AFTER_END = at("2025-02-01T00:00:00+00:00")


def spend(driver, customer, amount, when=WHEN, n=0):
    return driver.pipe("transactions", customer, transaction(customer, amount, when, n), timestamp=at(when))


def test_deactivated_milestone_stops_tracking_and_reactivation_resumes(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    processed = driver.pipe("definitions", "m-monthly", {"type": "milestone_status", "milestone_id": "m-monthly", "active": False}, timestamp=DURING)
    snapshot = orjson.loads(processed.records[0].value)
    assert snapshot["type"] == "milestone_definition" and snapshot["active"] is False
    spend(driver, "c1", "6000")
    assert driver.read("promotions") == []
    driver.pipe("definitions", "m-monthly", {"type": "milestone_status", "milestone_id": "m-monthly", "active": True}, timestamp=DURING)
    spend(driver, "c1", "6000", n=1)
    assert [e["kind"] for e in driver.read("promotions")] == ["achievement"]


def test_an_ended_milestone_cannot_be_reactivated(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    driver.pipe("definitions", "m-monthly", {"type": "milestone_status", "milestone_id": "m-monthly", "active": False}, timestamp=DURING)
    processed = driver.pipe("definitions", "m-monthly", {"type": "milestone_status", "milestone_id": "m-monthly", "active": True}, timestamp=AFTER_END)
    assert processed.outcome == "invalid_definition"
    assert "ended" in driver.read("dead-letters")[0]["detail"]


def test_name_is_immutable(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    renamed = monthly_gross_definition(name="A new name")
    assert driver.pipe("definitions", "m-monthly", renamed, timestamp=DURING).outcome == "invalid_definition"
    assert driver.topology.registry.milestones["m-monthly"].definition.name == "Monthly spend m-monthly"


def test_target_value_edit_applies_from_the_edit_on(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    spend(driver, "c1", "4000")
    edited = monthly_gross_definition(target="3000", description="lower target")
    assert driver.pipe("definitions", "m-monthly", edited, timestamp=DURING).outcome == "applied"
    spend(driver, "c1", "100", n=1)
    (event,) = driver.read("promotions")
    assert (event["achieved_value"], event["defined_value"]) == ("4100", "3000")


def test_sub_target_criterion_cannot_change_but_its_amount_can(driver):
    definition = monthly_gross_definition()
    definition["group"]["targets"][0]["sub_targets"] = [{"name": "Half", "criterion": "percentage", "value": "50"}]
    driver.pipe("definitions", "m-monthly", definition, timestamp=DURING)
    definition["group"]["targets"][0]["sub_targets"] = [{"name": "Half", "criterion": "absolute", "value": "2500"}]
    assert driver.pipe("definitions", "m-monthly", definition, timestamp=DURING).outcome == "invalid_definition"
    assert "only the amount" in driver.read("dead-letters")[0]["detail"]
    definition["group"]["targets"][0]["sub_targets"] = [{"name": "Half", "criterion": "percentage", "value": "40"}]
    assert driver.pipe("definitions", "m-monthly", definition, timestamp=DURING).outcome == "applied"


def test_clone_copies_everything_but_enrolment(driver):
    """The spec's 'Jaffna' example: clone the monthly milestone, then change what differs."""
    source = monthly_gross_definition(enrolment={"method": "specific", "customers": ["c1"]})
    driver.pipe("definitions", "m-monthly", source, timestamp=DURING)
    clone = {
        "type": "milestone_clone", "milestone_id": "m-clone", "source_milestone_id": "m-monthly",
        "name": "Jaffna net sales", "enrolment": {"method": "all"},
    }
    processed = driver.pipe("definitions", "m-clone", clone, timestamp=DURING)
    assert processed.outcome == "applied"
    cloned = driver.topology.registry.milestones["m-clone"].definition
    original = driver.topology.registry.milestones["m-monthly"].definition
    assert cloned.group == original.group and cloned.cycles == original.cycles
    assert cloned.enrolment.method == "all" and original.enrolment.method == "specific"
    republished = orjson.loads(processed.records[0].value)
    assert republished["milestone_id"] == "m-clone" and processed.records[0].key == b"m-clone"
    # The republished definition is itself a valid definitions record.
    assert driver.pipe("definitions", "m-clone", republished, timestamp=DURING).outcome == "applied"


def test_clone_of_an_ended_milestone_is_rejected(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    clone = {"type": "milestone_clone", "milestone_id": "m-clone", "source_milestone_id": "m-monthly",
             "name": "Too late", "enrolment": {"method": "all"}}
    assert driver.pipe("definitions", "m-clone", clone, timestamp=AFTER_END).outcome == "invalid_definition"


def test_names_are_unique_across_milestones(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    twin = monthly_gross_definition("m-twin", name="Monthly spend m-monthly")
    assert driver.pipe("definitions", "m-twin", twin, timestamp=DURING).outcome == "invalid_definition"


def test_status_is_timeline_and_activity():
    from milestream.engine.lifecycle import status
    from milestream.schemas.definitions import MilestoneDefinition

    definition = MilestoneDefinition.model_validate(monthly_gross_definition())
    assert status(definition, datetime(2023, 6, 1, tzinfo=timezone.utc)) == ("upcoming", "active")
    assert status(definition, DURING) == ("live", "active")
    assert status(definition.model_copy(update={"active": False}), AFTER_END) == ("ended", "inactive")
