"""The milestone-series FAQ (spec 000), one test per answer, named after its question."""

import pytest
from pydantic import ValidationError

from milestream.engine.series import SeriesRegistry, apply_series_definition
from milestream.schemas.codec import Rejected
from milestream.schemas.series import SeriesDefinition
from tests.engine.series_builders import (
    SeriesWorld,
    kinds,
    ledger,
    membership,
    redemption,
    series,
    tier,
)

DAY1 = "2025-01-02T10:00:00+00:00"
DAY2 = "2025-01-03T10:00:00+00:00"
DAY3 = "2025-01-04T10:00:00+00:00"


@pytest.fixture
def world() -> SeriesWorld:
    world = SeriesWorld()
    world.define(series())
    world.send(membership("ana", "ambassadors"))
    return world


def test_what_is_a_milestone_series(world):
    """Tiers of points: campaigns, actions and referrals earn points; more points unlock better rewards."""
    assert world.send(ledger("ana", "60", DAY1, source="campaign")) == []
    unlocked = world.send(ledger("ana", "50", DAY1, source="action"))
    assert kinds(unlocked) == [("tier_unlocked", 1, "bronze")]
    assert unlocked[0]["reward"] == {"reward_id": "reward-bronze", "kind": "custom"}
    assert unlocked[0]["series_points"] == "110"
    assert kinds(world.send(ledger("ana", "150", DAY2, source="referral"))) == [("tier_unlocked", 1, "silver")]
    # Points from other ledger sources (purchases, promotions, ...) are not series points by default.
    assert world.send(ledger("ana", "1000", DAY2, source="transaction")) == []
    assert world.states["ana"]["sr"]["s1"]["pts"] == "260"


def test_how_are_milestone_series_scoped_to_programs():
    """A series can serve several programs; a program has only one active series at a time."""
    world = SeriesWorld()
    world.define(series("s1", programs=["ambassadors", "creators"]))
    for customer, program in (("ana", "ambassadors"), ("bo", "creators"), ("cy", "affiliates")):
        world.send(membership(customer, program))
    for customer in ("ana", "bo", "cy"):
        world.send(ledger(customer, "100", DAY1))
    assert sorted(e["customer_id"] for e in world.events) == ["ana", "bo"]  # cy's program has no series
    assert world.events[0]["program_ids"] == ["ambassadors"]
    with pytest.raises(Rejected, match="program 'creators' already has an active series 's1'"):
        world.define(series("s2", programs=["creators"]))
    # Leaving the program stops collecting; the progress is kept.
    world.send(membership("bo", "creators", DAY2, action="leave"))
    assert world.send(ledger("bo", "500", DAY2)) == []
    assert world.states["bo"]["sr"]["s1"]["pts"] == "100"


def test_how_many_milestones_can_be_in_a_series():
    """Any number of tiers (bounded at 100 per series), each needing more points than the one before."""
    world = SeriesWorld()
    tiers = [tier(f"t{n:03}", str(n * 10)) for n in range(1, 101)]
    world.define(series(tiers=tiers))
    world.send(membership("ana", "ambassadors"))
    events = world.send(ledger("ana", "1000", DAY1, source="adjustment"))
    unlocked = [e for e in events if e["kind"] == "tier_unlocked"]
    assert [e["tier"]["index"] for e in unlocked] == list(range(1, 101))
    assert kinds(events)[-1] == ("series_completed", 1, None)
    with pytest.raises(ValidationError, match="thresholds must increase"):
        SeriesDefinition.model_validate(series(tiers=[tier("a", "100"), tier("b", "100")]))
    with pytest.raises(ValidationError, match="at most 100"):
        SeriesDefinition.model_validate(series(tiers=[tier(f"t{n}", str(n)) for n in range(1, 102)]))


def test_can_there_be_more_than_one_active_milestone_for_a_program_at_a_time():
    """No: a second active series for a program at an overlapping time is rejected with the reason;
    one that starts after the first ends, or replaces a deactivated one, is accepted."""
    registry = SeriesRegistry()
    first = SeriesDefinition.model_validate(series("spring", ends_at="2025-04-01T00:00:00+00:00"))
    apply_series_definition(registry, first)
    overlapping = SeriesDefinition.model_validate(series("summer", starts_at="2025-03-15T00:00:00+00:00"))
    with pytest.raises(Rejected) as rejected:
        apply_series_definition(registry, overlapping)
    assert rejected.value.reason == "invalid_definition"
    assert "a program can have only one active series" in rejected.value.detail
    assert "summer" not in registry.series
    apply_series_definition(
        registry, SeriesDefinition.model_validate(series("summer", starts_at="2025-04-01T00:00:00+00:00"))
    )
    apply_series_definition(registry, first.model_copy(update={"active": False}))
    apply_series_definition(
        registry,
        SeriesDefinition.model_validate(
            series("spring-2", starts_at="2025-02-01T00:00:00+00:00", ends_at="2025-04-01T00:00:00+00:00")
        ),
    )
    assert sorted(registry.series) == ["spring", "spring-2", "summer"]


def test_can_i_assign_more_than_one_reward_to_a_milestone():
    """Only a single reward per milestone (tier)."""
    two = series(
        tiers=[{"tier_id": "a", "name": "A", "points": "100", "rewards": [{"reward_id": "r1"}, {"reward_id": "r2"}]}]
    )
    with pytest.raises(ValidationError, match="exactly one reward"):
        SeriesDefinition.model_validate(two)
    with pytest.raises(ValidationError):
        SeriesDefinition.model_validate(series(tiers=[{"tier_id": "a", "name": "A", "points": "100"}]))


def test_can_ambassadors_repeat_a_milestone_series_once_they_unlock_all_the_milestones():
    """Yes, as many times as the series allows; points beyond the last tier carry into the next repetition."""
    world = SeriesWorld()
    world.define(series(repeats=1))  # completed at most twice
    world.send(membership("ana", "ambassadors"))
    world.send(ledger("ana", "450", DAY1))
    events = world.send(ledger("ana", "200", DAY2))  # 650: gold, done, 150 carried: bronze again
    assert kinds(events) == [
        ("tier_unlocked", 1, "gold"),
        ("series_completed", 1, None),
        ("tier_unlocked", 2, "bronze"),
    ]
    assert events[1]["final"] is False and events[2]["series_points"] == "150"
    events = world.send(ledger("ana", "400", DAY3))  # 550 in repetition 2
    assert kinds(events) == [
        ("tier_unlocked", 2, "silver"),
        ("tier_unlocked", 2, "gold"),
        ("series_completed", 2, None),
    ]
    assert events[-1]["final"] is True
    assert world.send(ledger("ana", "1000", DAY3)) == []  # no repetition left
    not_repeatable = SeriesWorld()
    not_repeatable.define(series())
    not_repeatable.send(membership("bo", "ambassadors"))
    events = not_repeatable.send(ledger("bo", "900", DAY1))
    assert kinds(events)[-1] == ("series_completed", 1, None) and events[-1]["final"] is True
    assert not_repeatable.send(ledger("bo", "900", DAY2)) == []


def test_can_i_promote_ambassadors_to_a_different_program_upon_unlocking_all_the_milestones():
    """Yes: one promotion event, on the final completion, for the program service."""
    world = SeriesWorld()
    world.define(series(repeats=1, promote_to_program_id="elite"))
    world.send(membership("ana", "ambassadors"))
    first = world.send(ledger("ana", "500", DAY1))
    assert "program_promotion" not in [e["kind"] for e in first]  # one repetition left
    events = world.send(ledger("ana", "500", DAY2))
    promotion = events[-1]
    assert (promotion["kind"], promotion["promote_to_program_id"], promotion["program_ids"]) == (
        "program_promotion",
        "elite",
        ["ambassadors"],
    )
    assert world.send(ledger("ana", "500", DAY3)) == []
    assert [e["kind"] for e in world.events].count("program_promotion") == 1
    with pytest.raises(ValidationError, match="another program"):
        SeriesDefinition.model_validate(series(promote_to_program_id="ambassadors"))


def test_if_ambassadors_completed_actions_before_the_milestone_series_was_started_is_there_a_way_to_retroactively_add_the_points_from_the_actions():
    """No back-dating: activity before the start never counts and the start cannot be moved earlier;
    a manual point adjustment (with a reason and who made it) can make up for it."""
    world = SeriesWorld()
    world.define(series(starts_at="2025-02-01T00:00:00+00:00"))
    world.send(membership("ana", "ambassadors"))
    assert world.send(ledger("ana", "300", "2025-01-20T10:00:00+00:00")) == []
    # A back-dated adjustment is activity before the start too.
    assert world.send(ledger("ana", "300", "2025-01-31T23:59:59+00:00", source="adjustment")) == []
    with pytest.raises(Rejected, match="starts_at cannot be changed"):
        world.define(series(starts_at="2025-01-01T00:00:00+00:00"))
    with pytest.raises(ValidationError, match="reason and the actor"):
        world.send(ledger("ana", "300", "2025-02-02T10:00:00+00:00", source="adjustment", reason=None))
    events = world.send(
        ledger(
            "ana",
            "300",
            "2025-02-02T10:00:00+00:00",
            source="adjustment",
            reason="actions in January",
            actor="support-7",
        )
    )
    assert kinds(events) == [("tier_unlocked", 1, "bronze"), ("tier_unlocked", 1, "silver")]


def test_does_roster_keep_track_of_a_contacts_lifetime_points_and_if_so_is_there_a_way_to_see_a_contacts_lifetime_points():
    """Lifetime points are kept per contact (every credit, adjustments either way; spending does not lower
    them), published as the contact's latest total, and can be sorted across contacts."""
    world = SeriesWorld()
    world.send(ledger("ana", "120", DAY1, source="campaign"))
    world.send(ledger("ana", "-50", DAY2, source="other"))  # spent: lifetime points stay
    world.send(ledger("ana", "-20", DAY2, source="adjustment"))  # a correction lowers them
    world.send(ledger("bo", "300", DAY1, source="referral"))
    world.send(ledger("cy", "75", DAY1, source="transaction"))
    world.send(ledger("cy", "5", DAY1, currency="stars"))  # another currency
    totals = {c: r["points"] for c, r in world.lifetime.items()}
    assert totals == {"ana": "100", "bo": "300", "cy": "75"}
    assert world.lifetime["ana"]["updated_at"] == "2025-01-03T10:00:00.000000Z"
    descending = sorted(totals, key=lambda c: -float(totals[c]))
    assert descending == ["bo", "ana", "cy"]
    # No program or series is needed: lifetime points belong to the contact.
    assert "sr" not in world.states["ana"]


def test_can_brands_change_a_milestone_tier_reward_even_after_some_participants_have_unlocked_the_milestone():
    """Yes: those who unlocked it and have not redeemed see the new reward."""
    world = SeriesWorld()
    world.define(series())
    for customer in ("ana", "bo", "cy"):
        world.send(membership(customer, "ambassadors"))
    world.send(ledger("ana", "120", DAY1))
    world.send(ledger("bo", "130", DAY1))
    world.send(ledger("cy", "20", DAY1))  # has not unlocked bronze
    new_tiers = [tier("bronze", "100", "tote-bag", kind="automated_product"), *series()["tiers"][1:]]
    changed = world.define(series(tiers=new_tiers), version="definitions/0/42", at=DAY2)
    assert [(e["kind"], e["customer_id"]) for e in changed] == [
        ("tier_reward_changed", "ana"),
        ("tier_reward_changed", "bo"),
    ]
    assert changed[0]["reward"] == {"reward_id": "tote-bag", "kind": "automated_product"}
    assert changed[0]["previous_reward"] == {"reward_id": "reward-bronze", "kind": "custom"}
    assert changed[0]["cause"] == "definitions/0/42"
    # Whoever unlocks the tier from now on gets the new reward.
    assert world.send(ledger("cy", "100", DAY3))[0]["reward"]["reward_id"] == "tote-bag"
    # Name-only edits change no reward and notify nobody.
    assert world.define(series(tiers=new_tiers, name="Renamed")) == []


def test_what_happens_if_an_ambassador_has_already_redeemed_or_received_a_previous_reward_before_the_milestone_reward_type_was_changed():
    """Who redeemed keeps the old reward and is not eligible for the new one; who has not can claim the new one."""
    world = SeriesWorld()
    world.define(series())
    for customer in ("ana", "bo"):
        world.send(membership(customer, "ambassadors"))
        world.send(ledger(customer, "120", DAY1))
    world.send(redemption("ana", "bronze", "reward-bronze", DAY1))
    new_tiers = [tier("bronze", "100", "discount-15", kind="discount_code"), *series()["tiers"][1:]]
    changed = world.define(series(tiers=new_tiers), at=DAY2)
    assert [e["customer_id"] for e in changed] == ["bo"]
    assert world.states["ana"]["sr"]["s1"]["u"]["1/bronze"] == {
        "rw": {"reward_id": "reward-bronze", "kind": "custom"},
        "rd": "reward-bronze",
    }
    assert world.states["bo"]["sr"]["s1"]["u"]["1/bronze"]["rw"]["reward_id"] == "discount-15"


def test_how_does_the_ambassador_experience_work_with_automated_product_rewards():
    """The portal and the shop order are the reward service's; Milestream tells it who can claim the
    automated product reward, and records the redemption it reports back (no further change reaches them)."""
    world = SeriesWorld()
    world.define(series())
    world.send(membership("ana", "ambassadors"))
    world.send(ledger("ana", "120", DAY1))
    product = tier("bronze", "100", "product-bundle", kind="automated_product", reward_name="Pick a product")
    (changed,) = world.define(series(tiers=[product, *series()["tiers"][1:]]), at=DAY2)
    assert changed["reward"] == {"reward_id": "product-bundle", "kind": "automated_product", "name": "Pick a product"}
    world.send(redemption("ana", "bronze", "product-bundle", DAY3))
    again = tier("bronze", "100", "other-product", kind="automated_product")
    assert world.define(series(tiers=[again, *series()["tiers"][1:]]), at=DAY3) == []
