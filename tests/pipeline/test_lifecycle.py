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
    processed = driver.pipe(
        "definitions",
        "m-monthly",
        {"type": "milestone_status", "milestone_id": "m-monthly", "active": False},
        timestamp=DURING,
    )
    snapshot = orjson.loads(processed.records[0].value)
    assert snapshot["type"] == "milestone_definition" and snapshot["active"] is False
    spend(driver, "c1", "6000")
    assert driver.read("promotions") == []
    driver.pipe(
        "definitions",
        "m-monthly",
        {"type": "milestone_status", "milestone_id": "m-monthly", "active": True},
        timestamp=DURING,
    )
    spend(driver, "c1", "6000", n=1)
    assert [e["kind"] for e in driver.read("promotions")] == ["achievement"]


def test_an_ended_milestone_cannot_be_reactivated(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    driver.pipe(
        "definitions",
        "m-monthly",
        {"type": "milestone_status", "milestone_id": "m-monthly", "active": False},
        timestamp=DURING,
    )
    processed = driver.pipe(
        "definitions",
        "m-monthly",
        {"type": "milestone_status", "milestone_id": "m-monthly", "active": True},
        timestamp=AFTER_END,
    )
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
        "type": "milestone_clone",
        "milestone_id": "m-clone",
        "source_milestone_id": "m-monthly",
        "name": "Jaffna net sales",
        "enrolment": {"method": "all"},
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
    clone = {
        "type": "milestone_clone",
        "milestone_id": "m-clone",
        "source_milestone_id": "m-monthly",
        "name": "Too late",
        "enrolment": {"method": "all"},
    }
    assert driver.pipe("definitions", "m-clone", clone, timestamp=AFTER_END).outcome == "invalid_definition"


def clone_of(source_id: str, milestone_id: str, name: str, **fields) -> dict:
    return {
        "type": "milestone_clone",
        "milestone_id": milestone_id,
        "source_milestone_id": source_id,
        "name": name,
        "enrolment": {"method": "all"},
        **fields,
    }


NET_SALES = {
    "target_id": "spend",
    "name": "Net 5000",
    "activity": "transaction",
    "level": "bill",
    "kpi": "net_amount",
    "value": "5000",
}


def test_a_clone_changes_the_kpi_the_original_cannot_change(driver):
    """The spec's 'Jaffna' example in full: the clone counts net sales where the original counts gross."""
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    edit = monthly_gross_definition()
    edit["group"]["targets"][0]["kpi"] = "net_amount"
    assert driver.pipe("definitions", "m-monthly", edit, timestamp=DURING).outcome == "invalid_definition"
    clone = clone_of("m-monthly", "m-net", "Jaffna net sales", changes={"group": {"targets": [NET_SALES]}})
    processed = driver.pipe("definitions", "m-net", clone, timestamp=DURING)
    assert processed.outcome == "applied", driver.read("dead-letters")
    cloned = driver.topology.registry.milestones["m-net"].definition
    assert cloned.group.targets[0].kpi == "net_amount" and cloned.cycles.frequency == "monthly"
    assert orjson.loads(processed.records[0].value)["group"]["targets"][0]["kpi"] == "net_amount"
    # Gross 6000 with a 1500 discount: net 4500 reaches the original only.
    spend(driver, "c1", "6000")
    driver.pipe("transactions", "c2", transaction("c2", "6000", WHEN, 1, net_amount="4500"), timestamp=at(WHEN))
    driver.pipe("transactions", "c3", transaction("c3", "6000", WHEN, 2, net_amount="5200"), timestamp=at(WHEN))
    assert sorted((e["milestone_id"], e["customer_id"]) for e in driver.read("promotions")) == [
        ("m-monthly", "c1"),
        ("m-monthly", "c2"),
        ("m-monthly", "c3"),
        ("m-net", "c1"),
        ("m-net", "c3"),
    ]


def test_clone_changes_merge_into_the_source_and_null_restores_a_default(driver):
    source = monthly_gross_definition(till_code="TILL1", settings={"buffer_days": 3, "track_from_enrolment": True})
    driver.pipe("definitions", "m-monthly", source, timestamp=DURING)
    changes = {
        "settings": {"buffer_days": 7},
        "till_code": None,
        "timezone": "UTC",
        "cycles": {"frequency": "quarterly", "count": 4},
    }
    assert (
        driver.pipe(
            "definitions", "m-q", clone_of("m-monthly", "m-q", "Quarterly", changes=changes), timestamp=DURING
        ).outcome
        == "applied"
    )
    cloned = driver.topology.registry.milestones["m-q"].definition
    assert (cloned.settings.buffer_days, cloned.settings.track_from_enrolment) == (7, True)
    assert cloned.till_code is None and cloned.timezone == "UTC"
    assert (cloned.cycles.kind, cloned.cycles.frequency, cloned.cycles.count) == ("calendar", "quarterly", 4)


def test_a_clone_whose_changes_break_the_rules_is_an_invalid_definition_with_every_reason(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    bad_target = {**NET_SALES, "kpi": "quantity"}  # a line-item KPI on a bill-level target
    changes = {"group": {"targets": [bad_target]}, "timezone": "Mars/Olympus", "colour": "red"}
    processed = driver.pipe(
        "definitions", "m-bad", clone_of("m-monthly", "m-bad", "Bad", changes=changes), timestamp=DURING
    )
    assert processed.outcome == "invalid_definition"
    detail = driver.read("dead-letters")[0]["detail"]
    assert "clone of m-monthly" in detail
    for reason in ("KPI 'quantity' is not available", "unknown timezone 'Mars/Olympus'", "colour: Extra inputs"):
        assert reason in detail, detail
    assert "m-bad" not in driver.topology.registry.milestones


def test_clone_changes_may_not_set_what_the_command_gives(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    clone = clone_of("m-monthly", "m-x", "X", changes={"milestone_id": "m-y", "name": "Y"})
    assert driver.pipe("definitions", "m-x", clone, timestamp=DURING).outcome == "invalid_definition"
    assert "changes may not set milestone_id, name" in driver.read("dead-letters")[0]["detail"]


def test_a_clone_tracking_another_milestone_passes_the_same_checks_as_a_new_definition(driver):
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=DURING)
    tracking = {
        "group": {
            "targets": [
                {
                    "target_id": "t",
                    "name": "Own months",
                    "activity": "milestone_achieved",
                    "kpi": "count",
                    "value": "2",
                    "source_milestone_id": "m-missing",
                }
            ]
        }
    }
    clone = clone_of("m-monthly", "m-track", "Tracker", changes=tracking)
    assert driver.pipe("definitions", "m-track", clone, timestamp=DURING).outcome == "invalid_definition"
    assert "tracked milestone 'm-missing' does not exist" in driver.read("dead-letters")[0]["detail"]


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


# ----------------------------------------------------- the compacted topic ends valid
class DefinitionsLog:
    """The definitions topic as the worker sees it: every record appended in order, and what
    applying one produced on the definitions topic appended after it (as the publishing
    worker does), then applied in its turn."""

    def __init__(self, driver):
        self.driver = driver
        self.records: list[tuple[bytes, bytes | None]] = []

    def publish(self, key: str, value, timestamp=DURING):
        pending = [(key.encode(), value if isinstance(value, (bytes, type(None))) else orjson.dumps(value))]
        first = None
        while pending:
            key_bytes, raw = pending.pop(0)
            self.records.append((key_bytes, raw))
            processed = self.driver.pipe("definitions", key_bytes, raw, timestamp=timestamp)
            first = first or processed
            topic = self.driver.topic("definitions")
            pending += [(r.key, r.value) for r in processed.records if r.topic == topic]
            assert len(self.records) < 100, "republishing must not loop"
        return first

    def last(self, key: str) -> bytes | None:
        return [value for k, value in self.records if k == key.encode()][-1]

    def compacted(self) -> list[tuple[bytes, bytes]]:
        """What a new worker reads after compaction: the last record per key, in log order, no tombstones."""
        last = {key: offset for offset, (key, _) in enumerate(self.records)}
        return [self.records[o] for o in sorted(last.values()) if self.records[o][1] is not None]


def registry_view(driver) -> dict:
    registry = driver.topology.registry
    return {
        "milestones": {mid: c.definition for mid, c in registry.milestones.items()},
        "settings": dict(registry.org_settings),
        "series": dict(driver.topology.series.registry.series),
    }


def replayed(log: DefinitionsLog):
    from milestream.pipeline.driver import TopologyTestDriver

    fresh = TopologyTestDriver()
    for key, value in log.compacted():
        assert fresh.pipe("definitions", key, value, timestamp=DURING).outcome == "applied"
    return fresh


def test_a_rejected_edit_is_followed_by_the_current_definition_so_compaction_keeps_it(driver):
    log = DefinitionsLog(driver)
    original = monthly_gross_definition()
    log.publish("m-monthly", original)
    processed = log.publish("m-monthly", monthly_gross_definition(name="A new name"))
    assert processed.outcome == "invalid_definition"
    assert orjson.loads(log.last("m-monthly")) == original
    assert driver.read("dead-letters")[0]["reason"] == "invalid_definition"  # still dead-lettered
    fresh = replayed(log)
    assert registry_view(fresh) == registry_view(driver)
    assert fresh.topology.registry.milestones["m-monthly"].definition.name == "Monthly spend m-monthly"


def test_several_rejections_in_a_row_each_restore_the_same_definition_and_nothing_loops(driver):
    log = DefinitionsLog(driver)
    log.publish("m-monthly", monthly_gross_definition())
    edited = monthly_gross_definition(target="3000")
    log.publish("m-monthly", edited)
    for name in ("one", "two", "three"):
        assert (
            log.publish("m-monthly", monthly_gross_definition(name=name, target="3000")).outcome == "invalid_definition"
        )
    assert orjson.loads(log.last("m-monthly")) == edited
    assert len(log.records) == 2 + 3 * 2  # each rejection: the record and one republished copy, applied silently
    assert len(driver.read("dead-letters")) == 3
    assert registry_view(replayed(log)) == registry_view(driver)


def test_a_rejected_command_restores_the_definition_a_lifecycle_command_produced(driver):
    log = DefinitionsLog(driver)
    log.publish("m-monthly", monthly_gross_definition())
    log.publish("m-monthly", {"type": "milestone_status", "milestone_id": "m-monthly", "active": False})
    reactivate = {"type": "milestone_status", "milestone_id": "m-monthly", "active": True}
    assert log.publish("m-monthly", reactivate, timestamp=AFTER_END).outcome == "invalid_definition"
    assert orjson.loads(log.last("m-monthly"))["active"] is False
    assert registry_view(replayed(log)) == registry_view(driver)


def test_a_rejected_record_under_a_key_with_no_valid_definition_is_followed_by_a_tombstone(driver):
    log = DefinitionsLog(driver)
    log.publish("m-taken", monthly_gross_definition("m-taken", name="Gold"))
    # Rejected only because another milestone has the name: replayed alone it would pass.
    assert log.publish("m-twin", monthly_gross_definition("m-twin", name="Gold")).outcome == "invalid_definition"
    assert log.last("m-twin") is None
    assert driver.pipe("definitions", "m-twin", None).outcome == "nothing_to_delete"  # the tombstone itself
    assert "m-twin" not in registry_view(replayed(log))["milestones"]
    # An unknown milestone's command and a record under the wrong key are no different.
    log.publish("m-ghost", {"type": "milestone_status", "milestone_id": "m-ghost", "active": False})
    assert log.last("m-ghost") is None


def test_a_record_under_the_wrong_key_restores_that_keys_definition(driver):
    log = DefinitionsLog(driver)
    original = monthly_gross_definition()
    log.publish("m-monthly", original)
    assert log.publish("m-monthly", monthly_gross_definition("m-other")).outcome == "wrong_key"
    assert orjson.loads(log.last("m-monthly")) == original


def test_a_definition_cannot_be_deleted_by_a_tombstone(driver):
    log = DefinitionsLog(driver)
    original = monthly_gross_definition()
    log.publish("m-monthly", original)
    assert log.publish("m-monthly", None).outcome == "invalid_definition"
    assert orjson.loads(log.last("m-monthly")) == original
    assert "cannot be deleted" in driver.read("dead-letters")[0]["detail"]
    assert "m-monthly" in driver.topology.registry.milestones


def test_settings_and_series_keys_are_restored_too(driver):
    from tests.engine.series_builders import series

    log = DefinitionsLog(driver)
    settings = {"type": "organisation_settings", "org_id": "acme", "buffer_days": 3}
    log.publish("settings:acme", settings)
    assert log.publish("settings:acme", {**settings, "buffer_days": -1}).outcome == "invalid_definition"
    assert orjson.loads(log.last("settings:acme")) == settings
    first = series("s1")
    log.publish("series:s1", first)
    changed = series("s1", tiers=[{**first["tiers"][0], "points": "1"}])
    assert log.publish("series:s1", changed).outcome == "invalid_definition"
    assert orjson.loads(log.last("series:s1")) == first
    assert registry_view(replayed(log)) == registry_view(driver)
