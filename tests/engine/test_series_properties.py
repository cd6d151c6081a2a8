"""Properties of the series engine over random streams of points, memberships, redemptions and reward edits."""

from collections import Counter
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine.series_builders import SeriesWorld, ledger, membership, redemption, series, tier

CUSTOMERS = ["ana", "bo"]
DAYS = [f"2025-01-{d:02}T10:00:00+00:00" for d in range(2, 20)]
TIERS = [tier("t1", "100"), tier("t2", "250"), tier("t3", "400")]

amount = st.integers(min_value=-150, max_value=900).map(str)
operation = st.one_of(
    st.tuples(
        st.just("points"),
        st.sampled_from(CUSTOMERS),
        amount,
        st.sampled_from(["action", "campaign", "referral", "adjustment", "other"]),
    ),
    st.tuples(st.just("leave"), st.sampled_from(CUSTOMERS)),
    st.tuples(st.just("join"), st.sampled_from(CUSTOMERS)),
    st.tuples(st.just("redeem"), st.sampled_from(CUSTOMERS), st.sampled_from(["t1", "t2", "t3"]), st.integers(1, 3)),
    st.tuples(st.just("reward"), st.sampled_from(["t1", "t2", "t3"]), st.sampled_from(["a", "b", "c"])),
)


def run(operations, repeats):
    world = SeriesWorld()
    rewards = {t["tier_id"]: t["reward"]["reward_id"] for t in TIERS}
    world.define(series(tiers=TIERS, repeats=repeats, promote_to_program_id="elite"), version="v0")
    for customer in CUSTOMERS:
        world.send(membership(customer, "ambassadors"))
    for n, op in enumerate(operations):
        when = DAYS[n % len(DAYS)] if n < len(DAYS) else DAYS[-1]
        if op[0] == "points":
            _, customer, value, source = op
            world.send(ledger(customer, value, when, source=source))
        elif op[0] in ("join", "leave"):
            world.send(membership(op[1], "ambassadors", when, action=op[0]))
        elif op[0] == "redeem":
            _, customer, tier_id, rep = op
            world.send(redemption(customer, tier_id, rewards[tier_id], when, repetition=rep))
        else:
            _, tier_id, reward = op
            rewards[tier_id] = f"{tier_id}-{reward}"
            tiers = [tier(t["tier_id"], t["points"], rewards[t["tier_id"]]) for t in TIERS]
            world.define(series(tiers=tiers, repeats=repeats, promote_to_program_id="elite"), version=f"v{n + 1}")
    return world


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=40), st.integers(min_value=0, max_value=2))
def test_no_tier_is_unlocked_twice_in_a_repetition_and_promotion_happens_at_most_once(operations, repeats):
    world = run(operations, repeats)
    unlocks = Counter(
        (e["customer_id"], e["repetition"], e["tier"]["tier_id"]) for e in world.events if e["kind"] == "tier_unlocked"
    )
    assert all(count == 1 for count in unlocks.values()), unlocks
    for customer in CUSTOMERS:
        mine = [e for e in world.events if e["customer_id"] == customer]
        promotions = [e for e in mine if e["kind"] == "program_promotion"]
        completions = [e for e in mine if e["kind"] == "series_completed"]
        assert len(promotions) <= 1
        assert len(completions) <= repeats + 1
        assert [e["repetition"] for e in completions] == list(range(1, len(completions) + 1))
        if promotions:  # only after the final completion
            assert completions and completions[-1]["final"] and len(completions) == repeats + 1
        # A repetition's tiers unlock in order, and the next repetition starts only after it completed.
        for rep in {e["repetition"] for e in mine if e["kind"] == "tier_unlocked"}:
            order = [e["tier"]["index"] for e in mine if e["kind"] == "tier_unlocked" and e["repetition"] == rep]
            assert order == sorted(order)
            if rep > 1:
                assert any(e["repetition"] == rep - 1 for e in completions)
    assert len({e["event_id"] for e in world.events}) == len(world.events)


@settings(max_examples=60, deadline=None)
@given(st.lists(operation, max_size=30), st.integers(min_value=0, max_value=2))
def test_the_same_stream_yields_the_same_events_byte_for_byte(operations, repeats):
    assert run(operations, repeats).events == run(operations, repeats).events


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), max_size=25), st.integers(min_value=0, max_value=3))
def test_counted_points_are_conserved_across_repetitions(credits, repeats):
    """Completed repetitions times the last tier, plus the current count, equals every point counted
    (the carry-over loses nothing and invents nothing) until the series is finished."""
    world = run([("points", "ana", str(c), "action") for c in credits], repeats)
    ss = world.states["ana"].get("sr", {}).get("s1")
    total = Decimal(sum(credits))
    if ss is None:
        assert total == 0
        return
    last = Decimal(TIERS[-1]["points"])
    if ss["done"] < repeats + 1:
        assert ss["done"] * last + Decimal(ss["pts"]) == total
        assert Decimal(ss["pts"]) < last
