"""Milestone series through the whole topology, in-process: topics, keys, fan-out, redelivery."""

from datetime import datetime

import pytest

from milestream.schemas.series import LifetimePoints, SeriesEvent, SeriesRewardChange
from tests.engine.builders import customer_state
from tests.engine.series_builders import ledger, membership, redemption, series, tier

T0 = datetime.fromisoformat("2025-01-02T10:00:00+00:00")
DAY1 = "2025-01-02T10:00:00+00:00"
DAY2 = "2025-01-03T10:00:00+00:00"


def series_events(driver):
    events = [e for e in driver.read("promotions") if e["type"] == "series_event"]
    for event in events:
        SeriesEvent.model_validate(event)
    return events


@pytest.fixture
def loaded(driver):
    assert (
        driver.pipe("definitions", "series:s1", series(promote_to_program_id="elite"), timestamp=T0).outcome
        == "applied"
    )
    driver.pipe("enrolments", "ana", membership("ana", "ambassadors"), timestamp=T0)
    driver.pipe("enrolments", "bo", membership("bo", "ambassadors"), timestamp=T0, partition=3)
    return driver


def test_series_definition_key_is_series_and_its_id(driver):
    processed = driver.pipe("definitions", "s1", series())
    assert processed.outcome == "wrong_key"
    assert "series:s1" in driver.read("dead-letters")[0]["detail"]


def test_a_second_active_series_for_a_program_is_dead_lettered_with_the_reason(loaded):
    processed = loaded.pipe("definitions", "series:s2", series("s2"), timestamp=T0)
    assert processed.outcome == "invalid_definition"
    (letter,) = loaded.read("dead-letters")
    assert "program 'ambassadors' already has an active series 's1'" in letter["detail"]
    assert "s2" not in loaded.topology.series.registry.series


def test_points_unlock_tiers_and_publish_lifetime_points(loaded):
    processed = loaded.pipe("ledger", "ana", ledger("ana", "300", DAY1, source="campaign"), timestamp=T0)
    assert processed.outcome == "applied"
    assert [(e["kind"], e["tier"]["tier_id"]) for e in series_events(loaded)] == [
        ("tier_unlocked", "bronze"),
        ("tier_unlocked", "silver"),
    ]
    (lifetime,) = loaded.read("lifetime-points")
    LifetimePoints.model_validate(lifetime)
    assert (lifetime["customer_id"], lifetime["points"]) == ("ana", "300")
    key, _ = loaded.produced[loaded.topic("lifetime-points")][0]
    assert key == b"ana"  # compacted by customer: the topic keeps each contact's latest total


def test_manual_adjustment_needs_a_reason_and_an_actor(loaded):
    processed = loaded.pipe("ledger", "ana", ledger("ana", "300", DAY1, source="adjustment", actor=None), timestamp=T0)
    assert processed.outcome == "schema_violation"
    assert "reason and the actor" in loaded.read("dead-letters")[0]["detail"]


def test_final_completion_publishes_one_promotion(loaded):
    loaded.pipe("ledger", "ana", ledger("ana", "700", DAY1), timestamp=T0)
    loaded.pipe("ledger", "ana", ledger("ana", "700", DAY2), timestamp=T0)
    kinds = [e["kind"] for e in series_events(loaded)]
    assert kinds == ["tier_unlocked"] * 3 + ["series_completed", "program_promotion"]


def test_a_redelivered_ledger_entry_re_emits_identical_bytes_and_counts_once(loaded):
    entry = ledger("ana", "120", DAY1)
    loaded.pipe("ledger", "ana", entry, timestamp=T0, offset=7)
    again = loaded.pipe("ledger", "ana", entry, timestamp=T0, offset=7)
    assert again.outcome == "duplicate"
    first, second = loaded.produced[loaded.topic("promotions")]
    assert first == second
    assert len(loaded.read("lifetime-points")) == 2 and loaded.read("lifetime-points")[1]["points"] == "120"
    assert customer_state(loaded, "ana")["sr"]["s1"]["pts"] == "120"


def test_a_reward_change_reaches_every_partition_and_only_customers_who_can_still_claim(loaded):
    loaded.pipe("ledger", "ana", ledger("ana", "150", DAY1), timestamp=T0)
    loaded.pipe("ledger", "bo", ledger("bo", "150", DAY1), timestamp=T0, partition=3)
    loaded.pipe("redemptions", "ana", redemption("ana", "bronze", "reward-bronze", DAY1), timestamp=T0)
    edited = series(
        promote_to_program_id="elite",
        tiers=[
            tier("bronze", "100", "shop-bundle", kind="automated_product"),
            tier("silver", "250"),
            tier("gold", "500"),
        ],
    )
    processed = loaded.pipe("definitions", "series:s1", edited, timestamp=T0)
    commands = loaded.read("series-commands")
    assert len(commands) == 8 and {r.partition for r in processed.records} == set(range(8))
    assert all(SeriesRewardChange.model_validate(c).version == "milestream.definitions/0/1" for c in commands)
    changed = [e for e in series_events(loaded) if e["kind"] == "tier_reward_changed"]
    assert [(e["customer_id"], e["reward"]["reward_id"], e["previous_reward"]["reward_id"]) for e in changed] == [
        ("bo", "shop-bundle", "reward-bronze")
    ]  # ana redeemed the old reward and keeps it


def test_a_redelivered_reward_change_re_emits_the_same_event(loaded):
    loaded.pipe("ledger", "ana", ledger("ana", "150", DAY1), timestamp=T0)
    edited = series(
        promote_to_program_id="elite", tiers=[tier("bronze", "100", "new"), tier("silver", "250"), tier("gold", "500")]
    )
    loaded.pipe("definitions", "series:s1", edited, timestamp=T0)
    _, command = loaded.produced[loaded.topic("series-commands")][0]  # the one for partition 0, at offset 0
    replay = loaded.pipe("series-commands", b"series:s1", command, timestamp=T0, partition=0, offset=0)
    assert replay.outcome == "duplicate"
    changed = [e for e in series_events(loaded) if e["kind"] == "tier_reward_changed"]
    assert len(changed) == 2 and changed[0] == changed[1]


def test_lifetime_points_sort_across_contacts(loaded):
    for customer, points in (("ana", "40"), ("bo", "900"), ("cy", "300"), ("dee", "300")):
        loaded.pipe("ledger", customer, ledger(customer, points, DAY1, source="referral"), timestamp=T0)
    series_stage = loaded.topology.series
    assert [r["customer_id"] for r in series_stage.lifetime_ranking(loaded.store, 3)] == ["bo", "cy", "dee"]
    assert series_stage.lifetime_ranking(loaded.store, 2, descending=False) == [
        {"customer_id": "ana", "org_id": "default", "points": "40"},
        {"customer_id": "cy", "org_id": "default", "points": "300"},
    ]
    assert series_stage.lifetime_points(loaded.store, "bo") == {
        "customer_id": "bo",
        "org_id": "default",
        "points": "900",
    }
