"""Enrolment by performance in another milestone: the spec's petrol example (100 L, 200 L, 300 L)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.engine.closing import close_due
from milestream.engine.core import Engine
from milestream.engine.lifecycle import apply_command
from milestream.engine.registry import Registry
from milestream.schemas.definitions import MilestoneDefinition
from milestream.schemas.inputs import Enrolment, Transaction
from tests.engine.builders import (
    at,
    calendar,
    close,
    customer_state,
    definition,
    enrolment,
    line,
    load,
    outputs,
    rejection,
    send,
    target,
    till_achieved,
    txn,
)

STARTS, ENDS = "2024-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"


def petrol(
    milestone_id: str, litres: str, *, after: str | None = None, name: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A monthly target on litres of petrol; enrolled by achieving ``after`` when given."""
    litres_target = target(
        "litres",
        f"{litres} L of petrol",
        level="line_item",
        kpi="quantity",
        value=litres,
        filter={"field": "line_item.category", "op": "eq", "value": "petrol"},
    )
    if after is not None:
        fields.setdefault("enrolment", {"method": "performance", "performance": {"milestone_id": after}})
    return definition(
        milestone_id,
        name=name or milestone_id,
        targets=[litres_target],
        timezone="UTC",
        starts_at=STARTS,
        ends_at=ENDS,
        cycles=calendar("monthly", "2024-01-01", 12),
        **fields,
    )


TARGET_1 = petrol("target-1", "100")
TARGET_2 = petrol("target-2", "200", after="target-1")
TARGET_3 = petrol("target-3", "300", after="target-2")


def fill(customer: str, when: str, litres: str) -> dict[str, Any]:
    return txn(
        customer,
        when,
        gross=str(Decimal(litres) * 2),
        line_items=[line("fuel-95", str(Decimal(litres) * 2), category="petrol", quantity=litres)],
    )


def achieved(driver, customer: str = "ana") -> list[tuple[str, str, datetime]]:
    """(milestone, achieved value, when) of every achievement of a customer."""
    return [
        (e.milestone_id, str(e.achieved_value), e.occurred_at)
        for e in outputs(driver)
        if e.kind == "achievement" and e.customer_id == customer
    ]


def enrolled_at(driver, customer: str, milestone_id: str) -> str | None:
    """When a customer was enrolled by performance (ISO, +00:00), if they were."""
    when = (customer_state(driver, customer) or {}).get("m", {}).get(milestone_id, {}).get("pe")
    return at(when).isoformat(timespec="seconds") if when else None


def test_target_2_only_for_those_who_achieved_target_1_and_target_3_for_target_2(driver):
    load(driver, TARGET_1, TARGET_2, TARGET_3)
    send(driver, fill("ana", "2024-01-03T10:00:00+00:00", "60"), fill("bo", "2024-01-03T11:00:00+00:00", "80"))
    assert enrolled_at(driver, "ana", "target-2") is None
    send(driver, fill("ana", "2024-01-10T10:00:00+00:00", "50"))  # 110 L: target 1, and enrolled into target 2
    assert achieved(driver) == [("target-1", "110", at("2024-01-10T10:00:00+00:00"))]
    assert enrolled_at(driver, "ana", "target-2") == "2024-01-10T10:00:00+00:00"
    assert enrolled_at(driver, "ana", "target-3") is None
    # The litres that achieved target 1 count towards target 2 (mid-cycle enrolment counts past activity).
    send(driver, fill("ana", "2024-01-20T10:00:00+00:00", "100"))  # 210 L
    assert achieved(driver)[1:] == [("target-2", "210", at("2024-01-20T10:00:00+00:00"))]
    assert enrolled_at(driver, "ana", "target-3") == "2024-01-20T10:00:00+00:00"
    send(driver, fill("ana", "2024-01-30T10:00:00+00:00", "90"))  # 300 L
    assert achieved(driver)[2:] == [("target-3", "300", at("2024-01-30T10:00:00+00:00"))]
    # Bo bought 80 L: no target achieved, enrolled into nothing, so no close for targets 2 and 3 either.
    close(driver, "2024-02-01T00:00:00+00:00")
    closed = {(e.customer_id, e.milestone_id) for e in outputs(driver) if e.kind == "cycle_close"}
    assert closed == {("ana", "target-1"), ("ana", "target-2"), ("ana", "target-3"), ("bo", "target-1")}
    assert enrolled_at(driver, "bo", "target-2") is None and achieved(driver, "bo") == []


def test_one_fill_up_of_300_litres_runs_the_whole_chain(driver):
    load(driver, TARGET_3, TARGET_2, TARGET_1)  # the order of definition does not matter
    send(driver, fill("ana", "2024-03-05T08:00:00+00:00", "300"))
    moment = at("2024-03-05T08:00:00+00:00")
    assert achieved(driver) == [("target-1", "300", moment), ("target-2", "300", moment), ("target-3", "300", moment)]


def test_tracking_from_the_enrolment_date_does_not_count_the_qualifying_litres(driver):
    load(driver, TARGET_1, petrol("target-2", "200", after="target-1", settings={"track_from_enrolment": True}))
    send(driver, fill("ana", "2024-01-03T10:00:00+00:00", "150"))
    assert enrolled_at(driver, "ana", "target-2") == "2024-01-03T10:00:00+00:00"
    send(driver, fill("ana", "2024-01-04T10:00:00+00:00", "150"))
    assert [m for m, _, _ in achieved(driver)] == ["target-1"]
    send(driver, fill("ana", "2024-01-05T10:00:00+00:00", "50"))  # 200 L since the enrolment
    assert achieved(driver)[1:] == [("target-2", "200", at("2024-01-05T10:00:00+00:00"))]


def test_enrolled_by_a_minimum_value_before_the_target_is_achieved(driver):
    load(
        driver,
        TARGET_1,
        petrol(
            "target-2",
            "200",
            enrolment={
                "method": "performance",
                "performance": {"milestone_id": "target-1", "target_id": "litres", "min_value": "40"},
            },
        ),
    )
    send(driver, fill("ana", "2024-01-03T10:00:00+00:00", "30"))
    assert enrolled_at(driver, "ana", "target-2") is None
    send(driver, fill("ana", "2024-01-04T10:00:00+00:00", "10"))
    assert enrolled_at(driver, "ana", "target-2") == "2024-01-04T10:00:00+00:00"
    assert achieved(driver) == []


def test_a_named_cycle_counts_and_no_other(driver):
    load(
        driver,
        TARGET_1,
        petrol(
            "target-2",
            "200",
            enrolment={
                "method": "performance",
                "performance": {"milestone_id": "target-1", "cycle_name": "target-1 #2"},
            },
        ),
    )
    send(driver, fill("ana", "2024-01-03T10:00:00+00:00", "100"), fill("bo", "2024-02-03T10:00:00+00:00", "100"))
    assert enrolled_at(driver, "ana", "target-2") is None
    assert enrolled_at(driver, "bo", "target-2") == "2024-02-03T10:00:00+00:00"


def test_an_achievement_in_a_closed_cycle_enrols_at_the_next_event_into_a_milestone_defined_later(driver):
    load(driver, TARGET_1)
    send(driver, fill("ana", "2024-01-10T10:00:00+00:00", "120"), fill("bo", "2024-01-10T10:00:00+00:00", "20"))
    close(driver, "2024-02-01T00:00:00+00:00")  # January closes: its progress is gone from the open cycles
    assert "1" not in customer_state(driver, "ana")["m"]["target-1"]["c"]
    driver.pipe("definitions", "target-2", TARGET_2, timestamp=at("2024-02-10T00:00:00+00:00"))
    assert enrolled_at(driver, "ana", "target-2") is None  # definitions do not touch customers
    # Any later event of the customer (here a purchase of something else) enrols them, at its time.
    send(driver, txn("ana", "2024-02-12T09:00:00+00:00", "30"), txn("bo", "2024-02-12T09:00:00+00:00", "30"))
    assert enrolled_at(driver, "ana", "target-2") == "2024-02-12T09:00:00+00:00"
    assert enrolled_at(driver, "bo", "target-2") is None
    send(driver, fill("ana", "2024-02-20T10:00:00+00:00", "200"))
    assert [m for m, _, _ in achieved(driver)] == ["target-1", "target-1", "target-2"]


def test_a_close_tick_enrols_too(driver):
    load(driver, TARGET_1)
    send(driver, fill("ana", "2024-01-10T10:00:00+00:00", "120"))
    driver.pipe("definitions", "target-2", TARGET_2, timestamp=at("2024-01-15T00:00:00+00:00"))
    close(driver, "2024-02-01T00:00:00+00:00")
    assert enrolled_at(driver, "ana", "target-2") == "2024-02-01T00:00:00+00:00"


def test_the_time_factor_looks_back_from_the_moment_of_enrolment(driver):
    load(driver, TARGET_1)
    send(driver, fill("ana", "2024-01-05T10:00:00+00:00", "100"), fill("bo", "2024-02-20T10:00:00+00:00", "100"))
    close(driver, "2024-03-01T00:00:00+00:00")
    load(
        driver,
        petrol(
            "target-2",
            "200",
            enrolment={
                "method": "performance",
                "performance": {"milestone_id": "target-1", "time_factor": {"last_days": 20}},
            },
        ),
    )
    send(driver, txn("ana", "2024-03-05T09:00:00+00:00"), txn("bo", "2024-03-05T09:00:00+00:00"))
    assert enrolled_at(driver, "ana", "target-2") is None  # January ended more than 20 days ago
    assert enrolled_at(driver, "bo", "target-2") == "2024-03-05T09:00:00+00:00"


def test_specific_dates_select_the_source_cycles(driver):
    load(
        driver,
        TARGET_1,
        petrol(
            "target-2",
            "200",
            enrolment={
                "method": "performance",
                "performance": {"milestone_id": "target-1", "time_factor": {"after": "2024-02-01T00:00:00+00:00"}},
            },
        ),
    )
    send(driver, fill("ana", "2024-01-05T10:00:00+00:00", "100"), fill("bo", "2024-02-05T10:00:00+00:00", "100"))
    assert enrolled_at(driver, "ana", "target-2") is None
    assert enrolled_at(driver, "bo", "target-2") == "2024-02-05T10:00:00+00:00"


def test_an_unenrolment_is_not_undone_by_performance(driver):
    load(driver, TARGET_1, TARGET_2)
    send(driver, fill("ana", "2024-01-05T10:00:00+00:00", "100"))
    send(driver, enrolment("ana", "target-2", "2024-01-06T10:00:00+00:00", action="unenrol"))
    send(driver, fill("ana", "2024-02-05T10:00:00+00:00", "300"))
    assert [m for m, _, _ in achieved(driver)] == ["target-1", "target-1"]


def test_an_explicit_enrolment_that_achieves_the_source_enrols_by_performance(driver):
    specific_1 = petrol("target-1", "100", enrolment={"method": "none"})
    load(driver, specific_1, TARGET_2)
    send(driver, fill("ana", "2024-01-05T10:00:00+00:00", "150"))  # kept: counts if she enrols this month
    send(driver, enrolment("ana", "target-1", "2024-01-07T10:00:00+00:00"))
    assert [m for m, _, _ in achieved(driver)] == ["target-1"]
    assert enrolled_at(driver, "ana", "target-2") == "2024-01-07T10:00:00+00:00"


# --------------------------------------------------------------------------- definition rules
def _performance(milestone_id: str, **condition: Any) -> dict[str, Any]:
    return {"method": "performance", "performance": {"milestone_id": milestone_id, **condition}}


def test_performance_enrolment_follows_the_method_table(driver):
    detail = rejection(driver, definition("t", cycles=till_achieved(), enrolment=_performance("target-1")))
    assert "'by performance in another milestone' is not supported for cycles 'till target achievement'" in detail


def test_the_condition_goes_with_the_method(driver):
    assert "enrolment.performance is required" in rejection(
        driver, petrol("t", "1", enrolment={"method": "performance"})
    )
    assert "only used with it" in rejection(
        driver, petrol("t", "1", enrolment={"method": "all", "performance": {"milestone_id": "target-1"}})
    )


def test_a_milestone_cannot_depend_on_itself_directly_or_through_a_chain(driver):
    assert "cannot enrol by performance in itself" in rejection(driver, petrol("t", "1", after="t"))
    load(driver, petrol("a", "1", after="c"), petrol("b", "1", after="a"))
    assert "(each enrols by performance in the next): c -> b -> a -> c" in rejection(
        driver, petrol("c", "1", after="b")
    )


def test_references_must_resolve_whichever_milestone_comes_first(driver):
    load(driver, TARGET_1)
    assert "has no target 'litre'" in rejection(
        driver, petrol("t2", "1", enrolment=_performance("target-1", target_id="litre"))
    )
    assert "has no cycle named 'January'" in rejection(
        driver, petrol("t2", "1", enrolment=_performance("target-1", cycle_name="January"))
    )
    # A source defined after its dependent is checked then.
    load(driver, petrol("t3", "1", enrolment=_performance("later", target_id="litres")))
    assert "milestone 'later' has no target 'litres'" in rejection(driver, definition("later", timezone="UTC"))
    load(driver, petrol("later", "5"))


def test_time_factor_kinds_do_not_mix(driver):
    detail = rejection(
        driver,
        petrol(
            "t",
            "1",
            enrolment=_performance("target-1", time_factor={"last_days": 3, "after": "2024-01-01T00:00:00+00:00"}),
        ),
    )
    assert "either last_days or specific dates" in detail


# --------------------------------------------------------------------------- property
FILLS = st.lists(
    st.tuples(
        st.integers(0, 89), st.integers(0, 23), st.integers(1, 160), st.sampled_from(["fill", "unenrol", "enrol"])
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(FILLS)
def test_a_customer_is_enrolled_by_performance_at_most_once_per_cycle(actions):
    """Whatever the fills, explicit (un)enrolments and closes, each milestone enrols a customer by
    performance at most once per cycle, only once they achieved the source, and at the first such
    moment unless they had an enrolment of their own in the milestone before."""
    registry = Registry()
    for body in (TARGET_1, TARGET_2, TARGET_3):
        apply_command(registry, MilestoneDefinition.model_validate(body), at(STARTS))
    engine = Engine(registry)
    state: dict[str, Any] = {}
    start = at(STARTS)
    monthly: dict[int, Decimal] = {}
    first_achieved: datetime | None = None
    explicit_before_first = False
    enrolments: list[tuple[str, datetime]] = []
    closed_up_to = start
    for n, (day, hour, litres, kind) in enumerate(sorted(actions)):
        moment = start + timedelta(days=day, hours=hour, seconds=n)
        month_start = moment.replace(day=1, hour=0, minute=0, second=0)
        if month_start > closed_up_to:
            enrolments += close_due(engine, state, "ana", month_start).enrolled
            closed_up_to = month_start
        if kind == "fill":
            event = Transaction.model_validate(fill("ana", moment.isoformat(), str(litres)))
            monthly[moment.month] = monthly.get(moment.month, Decimal(0)) + litres
            if first_achieved is None and monthly[moment.month] >= 100:
                first_achieved = moment
        else:
            event = Enrolment.model_validate(enrolment("ana", "target-2", moment.isoformat(), action=kind))
            explicit_before_first = explicit_before_first or first_achieved is None
        enrolments += engine.apply(state, event, moment, "test").enrolled
    per_cycle = [(milestone_id, (when.year, when.month)) for milestone_id, when in enrolments]
    assert len(per_cycle) == len(set(per_cycle))
    into_2 = [when for milestone_id, when in enrolments if milestone_id == "target-2"]
    assert len(into_2) <= 1
    if into_2:
        assert first_achieved is not None and into_2[0] >= first_achieved
    if first_achieved is not None and not explicit_before_first:
        assert into_2 == [first_achieved]


def test_the_chain_runs_within_an_organisation_and_never_across(driver):
    acme = [{**d, "org_id": "acme", "name": f"acme {d['name']}"} for d in (TARGET_1, TARGET_2)]
    acme[0]["milestone_id"], acme[1]["milestone_id"] = "acme-1", "acme-2"
    acme[1]["enrolment"] = {"method": "performance", "performance": {"milestone_id": "acme-1"}}
    load(driver, TARGET_1, TARGET_2, *acme)
    send(driver, {**fill("ana", "2024-01-03T10:00:00+00:00", "300"), "org_id": "acme"})
    acme_ana = [(e.milestone_id, e.org_id) for e in outputs(driver) if e.kind == "achievement"]
    assert acme_ana == [("acme-1", "acme"), ("acme-2", "acme")]  # the default organisation's ana: nothing
    assert enrolled_at(driver, "ana", "target-2") is None
