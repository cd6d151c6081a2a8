"""Invariants of the engine over generated activity.

One milestone with several targets (sum, days of activity, daily max on an
extended field and on an event attribute, count) and sub-targets, monthly
cycles over one quarter, is fed generated transactions and behavioural events.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.pipeline.driver import TopologyTestDriver
from milestream.state.keys import Namespace

from .builders import TOPIC_OF, at, calendar, definition, documents, outputs, progress, target

IST = ZoneInfo("Asia/Kolkata")
START = datetime(2024, 1, 1, tzinfo=IST)
CYCLES = (1, 2, 3)
FAST = settings(max_examples=60, deadline=None)


def _sub(name: str, value: str, criterion: str = "absolute") -> dict:
    return {"name": name, "criterion": criterion, "value": value}


TARGETS = {
    # target id: (defined value, {sub-target name: value})
    "sum": (Decimal(1000), {"30%": Decimal(300), "60%": Decimal(600)}),
    "days": (Decimal(3), {}),
    "max": (Decimal(500), {"200": Decimal(200)}),
    "count": (Decimal(4), {"two": Decimal(2)}),
    "cart": (Decimal(800), {}),
}
MIN_TARGETS = 2

DEFINITION = definition(
    "prop",
    starts_at="2024-01-01T00:00:00+05:30",
    ends_at="2024-04-01T00:00:00+05:30",
    cycles=calendar("monthly", "2024-01-01", 3),
    group={
        "condition": "any",
        "min_targets": MIN_TARGETS,
        "targets": [
            target("sum", value="1000", sub_targets=[_sub("30%", "30", "percentage"), _sub("60%", "60", "percentage")]),
            target("days", kpi="days_of_activity", value="3"),
            target("max", kpi="extended_field_daily_max", field="v", value="500", sub_targets=[_sub("200", "200")]),
            target("count", kpi="count", value="4", sub_targets=[_sub("two", "2")]),
            target(
                "cart",
                activity="behavioural_event",
                level=None,
                kpi="attribute_daily_max",
                event_name="Added to Cart",
                field="price",
                value="800",
            ),
        ],
    },
)

amounts = st.decimals(min_value=0, max_value=600, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def activity(draw, customers=("c1",), last_day: int = 90) -> dict:
    """One transaction or "Added to Cart" event somewhere in the quarter (IST)."""
    customer = draw(st.sampled_from(customers))
    when = START + timedelta(days=draw(st.integers(0, last_day)), minutes=draw(st.integers(0, 24 * 60 - 1)))
    stamp = when.isoformat()
    if draw(st.booleans()):
        body = {"type": "transaction", "customer_id": customer, "event_time": stamp, "gross_amount": str(draw(amounts))}
        if draw(st.booleans()):
            body["extended_fields"] = {"v": str(draw(amounts))}
    else:
        body = {
            "type": "behavioural_event",
            "customer_id": customer,
            "event_time": stamp,
            "name": "Added to Cart",
            "attributes": {"price": str(draw(amounts))},
        }
    return body


def numbered(events: list[dict]) -> list[dict]:
    """Give each event its own ids (stable for the list, so a replay sends the same bytes)."""
    out = []
    for n, body in enumerate(events):
        body = {**body, "event_id": f"ev-{n}"}
        if body["type"] == "transaction":
            body["bill_id"] = f"bill-{n}"
        out.append(body)
    return out


def fresh() -> TopologyTestDriver:
    driver = TopologyTestDriver()
    assert driver.pipe("definitions", "prop", DEFINITION).outcome == "applied"
    return driver


def run(events: list[dict]) -> TopologyTestDriver:
    driver = fresh()
    for body in events:
        driver.pipe(TOPIC_OF[body["type"]], body["customer_id"], body, timestamp=at(body["event_time"]))
    return driver


def final_progress(driver, customer: str) -> dict[tuple[str, int], Decimal]:
    return {(tid, c): progress(driver, customer, "prop", tid, c) for tid in TARGETS for c in CYCLES}


def fired(driver) -> list[tuple[str, str, int, tuple[str, ...], str]]:
    return [(e.kind, e.target_id, e.cycle.index, tuple(e.trigger_names), e.customer_id) for e in outputs(driver)]


# ------------------------------------------------------------------ properties
@FAST
@given(
    st.lists(activity(last_day=30), min_size=1, max_size=15).flatmap(
        lambda evs: st.tuples(st.just(evs), st.permutations(evs))
    )
)
def test_order_of_events_within_a_cycle_does_not_change_progress_or_achievements(pair):
    events, shuffled = pair
    first, second = run(numbered(events)), run(numbered(list(shuffled)))
    assert final_progress(first, "c1") == final_progress(second, "c1")
    assert Counter(fired(first)) == Counter(fired(second))


@FAST
@given(st.lists(activity(customers=("c1", "c2")), min_size=1, max_size=25))
def test_achievement_fires_at_most_once_per_target_per_cycle_and_exactly_when_reached(events):
    driver = run(numbered(events))
    achievements = Counter((t, c, who) for kind, t, c, _, who in fired(driver) if kind == "achievement")
    assert all(n == 1 for n in achievements.values()), achievements
    for customer in ("c1", "c2"):
        values = final_progress(driver, customer)
        for cycle in CYCLES:
            met = [tid for tid, (defined, _) in TARGETS.items() if values[(tid, cycle)] >= defined]
            for tid in TARGETS:
                assert ((tid, cycle, customer) in achievements) == (tid in met)
            assert (("group", cycle, customer) in achievements) == (len(met) >= MIN_TARGETS)


@FAST
@given(st.lists(activity(customers=("c1", "c2")), min_size=1, max_size=25))
def test_each_sub_target_fires_at_most_once_per_cycle_and_exactly_when_reached(events):
    driver = run(numbered(events))
    subs = Counter((t, c, names, who) for kind, t, c, names, who in fired(driver) if kind == "sub_target")
    assert all(n == 1 for n in subs.values()), subs
    for customer in ("c1", "c2"):
        values = final_progress(driver, customer)
        for cycle in CYCLES:
            for tid, (_, sub_values) in TARGETS.items():
                for name, value in sub_values.items():
                    assert ((tid, cycle, (name,), customer) in subs) == (values[(tid, cycle)] >= value)


@FAST
@given(st.lists(activity(customers=("c1", "c2")), min_size=1, max_size=20))
def test_replaying_the_same_events_into_fresh_state_gives_byte_identical_outputs(events):
    events = numbered(events)
    first, second = run(events), run(events)
    topic = first.topic("promotions")
    assert first.produced[topic] == second.produced[topic]
    assert [e["event_id"] for e in first.read("promotions")] == [e["event_id"] for e in second.read("promotions")]
    assert len({e["event_id"] for e in first.read("promotions")}) == len(first.read("promotions"))
    assert documents(first.store) == documents(second.store)


@FAST
@given(st.data())
def test_redelivering_any_record_never_changes_state(data):
    events = numbered(data.draw(st.lists(activity(customers=("c1", "c2")), min_size=1, max_size=15)))
    driver = fresh()
    sent: list[tuple[str, dict, int, list]] = []  # (topic, event, offset, records produced)
    offsets = {topic: itertools.count() for topic in set(TOPIC_OF.values())}
    for body in events:
        topic = TOPIC_OF[body["type"]]
        offset = next(offsets[topic])
        processed = driver.pipe(topic, body["customer_id"], body, timestamp=at(body["event_time"]), offset=offset)
        sent.append((topic, body, offset, processed.records))
        for topic_again, again, again_offset, original in data.draw(
            st.lists(st.sampled_from(sent), max_size=2), label="redelivered"
        ):
            before = documents(driver.store)
            replay = driver.pipe(
                topic_again, again["customer_id"], again, timestamp=at(again["event_time"]), offset=again_offset
            )
            assert replay.outcome == "duplicate"
            assert documents(driver.store) == before
            # Outputs still in the customer's outbox are re-emitted unchanged; older ones are not re-sent.
            stored = driver.store.get(Namespace.OUTBOX.key(again["customer_id"])) or {}
            outbox = [source for source, _ in stored.get("ob", ())]
            source = f"{driver.topic(topic_again)}/0/{again_offset}"
            assert replay.records == (original if source in outbox else [])
