"""Organisations (tenants): one fleet serves several brands without mixing their customers.

An input's ``org_id`` (``"default"`` when absent) names the organisation of its customer; the
same customer id in two organisations is two customers. A milestone counts only the events of
its own organisation, settings resolve per organisation, and every output carries the org_id.
"""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from milestream.pipeline.driver import TopologyTestDriver
from milestream.state.keys import Customer, Namespace

from .builders import (
    bill_return,
    calendar,
    close,
    definition,
    enrolment,
    ledger,
    load,
    send,
    target,
    txn,
)

BRAND = "brand-b"


def spend(milestone_id: str, org_id: str | None = None, **fields) -> dict:
    body = definition(milestone_id, targets=[target(f"{milestone_id}-t", value="500")], **fields)
    if org_id is not None:
        body["org_id"] = org_id
    return body


def test_a_milestone_counts_only_its_organisations_events():
    driver = TopologyTestDriver()
    load(driver, spend("home"), spend("brand", BRAND))
    send(
        driver,
        txn("c1", "2024-01-05T10:00:00+05:30", "300"),
        txn("c1", "2024-01-06T10:00:00+05:30", "300", org_id=BRAND),
    )
    assert driver.read("promotions") == []  # 300 each, not 600 for either

    send(driver, txn("c1", "2024-01-07T10:00:00+05:30", "250", org_id=BRAND))
    (event,) = driver.read("promotions")
    assert (event["milestone_id"], event["customer_id"], event["org_id"], event["achieved_value"]) == (
        "brand",
        "c1",
        BRAND,
        "550",
    )


def test_the_same_customer_id_in_two_organisations_has_two_states():
    driver = TopologyTestDriver()
    load(driver, spend("home"), spend("brand", BRAND))
    send(
        driver,
        txn("c1", "2024-01-05T10:00:00+05:30", "100"),
        txn("c1", "2024-01-05T11:00:00+05:30", "200", org_id=BRAND),
    )
    home = driver.store.get(Namespace.CUSTOMER.key("c1"))
    brand = driver.store.get(Customer(BRAND, "c1").state_key)
    assert set(home["m"]) == {"home"} and set(brand["m"]) == {"brand"}
    assert home["m"]["home"]["c"]["1"]["t"]["home-t"]["v"] == "100"
    assert brand["m"]["brand"]["c"]["1"]["t"]["brand-t"]["v"] == "200"


@given(
    st.lists(
        st.tuples(st.sampled_from(["default", "a", "1:a", "a:", ""]) | st.text(max_size=4), st.text(max_size=4)),
        min_size=2,
        max_size=8,
        unique=True,
    )
)
def test_no_two_customers_share_a_document_whatever_their_ids(pairs):
    """Even past the schemas' id rules (control characters, ":", digits): the keys are one-to-one."""
    customers = [Customer(org_id, customer_id) for org_id, customer_id in pairs]
    for kind in ("state_key", "outbox_key"):
        keys = [getattr(c, kind) for c in customers]
        assert len({k.encode() for k in keys}) == len(customers)
        assert [Customer.of_state_key(k) for k in keys] == customers
    assert [Customer.from_json(orjson.loads(orjson.dumps(c.to_json()))) for c in customers] == customers


def test_the_default_organisations_customers_keep_their_keys():
    """State written before organisations stays valid: the same keys as before."""
    assert Customer("default", "c1").state_key == Namespace.CUSTOMER.key("c1")
    assert Customer("default", "c1").outbox_key == Namespace.OUTBOX.key("c1")


def test_cycle_close_and_event_ids_are_per_organisation():
    driver = TopologyTestDriver()
    load(driver, spend("home"), spend("brand", BRAND))
    send(
        driver,
        txn("c1", "2024-01-05T10:00:00+05:30", "600"),
        txn("c1", "2024-01-05T10:00:00+05:30", "700", org_id=BRAND),
    )
    close(driver, "2024-02-01T00:00:00+05:30")
    events = driver.read("promotions")
    closes = {(e["org_id"], e["milestone_id"], e["customer_id"]) for e in events if e["kind"] == "cycle_close"}
    assert closes == {("default", "home", "c1"), (BRAND, "brand", "c1")}
    assert len({e["event_id"] for e in events}) == len(events) == 4


def test_settings_resolve_per_organisation():
    driver = TopologyTestDriver()
    driver.pipe(
        "definitions",
        f"settings:{BRAND}",
        {"type": "organisation_settings", "org_id": BRAND, "award_when_target_achieved": False},
    )
    load(driver, spend("home"), spend("brand", BRAND))
    send(
        driver,
        txn("c1", "2024-01-05T10:00:00+05:30", "600"),
        txn("c1", "2024-01-05T10:00:00+05:30", "600", org_id=BRAND),
    )
    # The brand awards at the cycle's end; the default organisation at once.
    assert [(e["org_id"], e["kind"]) for e in driver.read("promotions")] == [("default", "achievement")]


def test_an_enrolment_into_another_organisations_milestone_is_a_dead_letter():
    driver = TopologyTestDriver()
    load(driver, spend("brand", BRAND, enrolment={"method": "none"}))
    processed = driver.pipe("enrolments", "c1", enrolment("c1", "brand", "2024-01-05T10:00:00+05:30"))
    assert processed.outcome == "schema_violation"
    assert "belongs to organisation 'brand-b'" in driver.read("dead-letters")[-1]["detail"]
    assert driver.store.get(Namespace.CUSTOMER.key("c1")) is None

    send(
        driver,
        enrolment("c1", "brand", "2024-01-05T10:00:00+05:30", org_id=BRAND),
        txn("c1", "2024-01-06T10:00:00+05:30", "600", org_id=BRAND),
    )
    assert [(e["org_id"], e["kind"]) for e in driver.read("promotions")] == [(BRAND, "achievement")]


def test_a_specific_customers_list_enrols_the_milestones_organisations_customers():
    driver = TopologyTestDriver()
    load(driver, spend("brand", BRAND, enrolment={"method": "specific", "customers": ["c1"]}))
    for _, value in driver.produced[driver.topic("enrolments")]:
        driver.pipe("enrolments", "c1", value)
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "600"))  # the default organisation's c1: not listed
    assert driver.read("promotions") == []
    send(driver, txn("c1", "2024-01-06T10:00:00+05:30", "600", org_id=BRAND))
    assert [(e["org_id"], e["customer_id"]) for e in driver.read("promotions")] == [(BRAND, "c1")]


def test_late_events_unmatched_returns_and_lifetime_points_carry_the_org_id():
    driver = TopologyTestDriver()
    load(driver, spend("brand", BRAND, settings={"adjust_on_bill_return": True}))
    send(
        driver,
        bill_return("c1", "2024-01-05T10:00:00+05:30", org_id=BRAND),
        ledger("c1", "2024-01-05T10:00:00+05:30", "40", source="referral", org_id=BRAND),
    )
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "100", org_id=BRAND), timestamp="2024-03-01T00:00:00+05:30")
    late = driver.read("late-events")
    assert sorted(r["type"] for r in late) == ["late_event", "unmatched_return"]
    assert {r["org_id"] for r in late} == {BRAND}
    (lifetime,) = driver.read("lifetime-points")
    assert (lifetime["customer_id"], lifetime["org_id"], lifetime["points"]) == ("c1", BRAND, "40")
    assert driver.topology.series.lifetime_points(driver.store, "c1") is None
    assert driver.topology.series.lifetime_points(driver.store, "c1", BRAND)["points"] == "40"


def test_the_compacted_lifetime_points_topic_keeps_one_record_per_organisations_customer():
    driver = TopologyTestDriver()
    home = ledger("c1", "2024-01-05T10:00:00+05:30", "40", source="referral")
    brand = ledger("c1", "2024-01-05T10:00:00+05:30", "7", source="referral", org_id=BRAND)
    send(driver, home, brand)
    keys = [key for key, _ in driver.produced[driver.topic("lifetime-points")]]
    assert keys == [b"c1", b'["brand-b","c1"]']
    # A redelivery re-emits the record from the outbox under the same key.
    again = driver.pipe("ledger", "c1", brand, offset=1)
    assert again.outcome == "duplicate"
    assert [(r.key, orjson.loads(r.value)["points"]) for r in again.records] == [(b'["brand-b","c1"]', "7")]


def test_each_organisation_has_its_own_series_for_the_same_program_id():
    from .series_builders import ledger as points
    from .series_builders import membership, series

    driver = TopologyTestDriver()
    for body in (series("a-home"), series("z-brand", org_id=BRAND)):  # both on program "ambassadors", at once
        assert driver.pipe("definitions", f"series:{body['series_id']}", body).outcome == "applied"
    driver.pipe("enrolments", "c1", {**membership("c1", "ambassadors"), "org_id": BRAND})
    send(
        driver,
        {**points("c1", "300", "2025-01-02T10:00:00+00:00", source="campaign"), "org_id": BRAND},
        points("c1", "300", "2025-01-02T10:00:00+00:00", source="campaign"),
    )  # not a member at home
    events = [e for e in driver.read("promotions") if e["type"] == "series_event"]
    assert events and {(e["series_id"], e["org_id"], e["customer_id"]) for e in events} == {("z-brand", BRAND, "c1")}


# ------------------------------------------------------------------ property
ORGS = ("default", BRAND)
CUSTOMERS = ("c1", "c2")


def _milestones(org_id: str) -> list[dict]:
    """Each organisation's milestones: alike in shape (milestone ids are unique across the fleet)."""
    prefix = "home" if org_id == "default" else "brand"
    common = {"org_id": org_id, "cycles": calendar("monthly", "2024-01-01", 2), "ends_at": "2024-03-01T00:00:00+05:30"}
    return [
        definition(
            f"{prefix}-all",
            targets=[
                target(
                    f"{prefix}-spend",
                    value="500",
                    sub_targets=[{"name": "half", "criterion": "percentage", "value": "50"}],
                )
            ],
            **common,
        ),
        definition(
            f"{prefix}-listed",
            targets=[target(f"{prefix}-count", kpi="count", value="2")],
            enrolment={"method": "none"},
            settings={"adjust_on_bill_return": True},
            **common,
        ),
    ]


@st.composite
def org_event(draw) -> dict:
    org_id, customer = draw(st.sampled_from(ORGS)), draw(st.sampled_from(CUSTOMERS))
    when = f"2024-{draw(st.sampled_from(['01', '02']))}-{draw(st.integers(1, 28)):02d}T10:00:00+05:30"
    kind = draw(st.sampled_from(["txn", "txn", "enrol", "return", "ledger"]))
    listed = ("home" if org_id == "default" else "brand") + "-listed"
    tenant = {} if org_id == "default" else {"org_id": org_id}  # the default organisation's inputs name none
    if kind == "txn":
        body = txn(customer, when, str(draw(st.integers(0, 400))), **tenant)
        body["bill_id"] = f"bill-{draw(st.integers(1, 3))}"  # the same bill ids in both organisations
    elif kind == "enrol":
        body = enrolment(customer, listed, when, **tenant)
    elif kind == "return":
        body = bill_return(customer, when, bill_id=f"bill-{draw(st.integers(1, 3))}", **tenant)
    else:
        body = ledger(customer, when, str(draw(st.integers(1, 50))), source="referral", **tenant)
    return body


def _run(events: list[dict]) -> TopologyTestDriver:
    driver = TopologyTestDriver()
    load(driver, *_milestones("default"), *_milestones(BRAND))
    for event in events:
        send(driver, event, timestamp="2024-01-01T00:00:00+05:30")
    close(driver, "2024-03-05T00:00:00+05:30")
    return driver


def _outputs_of(driver: TopologyTestDriver, org_id: str) -> dict[str, list[dict]]:
    """Each output topic's records of one organisation, without where the input sat in its topic."""
    return {
        topic: [
            {k: v for k, v in r.items() if k not in ("cause", "source")}
            for r in driver.read(topic)
            if r["org_id"] == org_id
        ]
        for topic in ("promotions", "late-events", "lifetime-points")
    }


@settings(max_examples=40, deadline=None)
@given(st.lists(org_event(), min_size=1, max_size=25))
def test_tenants_never_see_each_others_events(events):
    """Any interleaving of two organisations' events, with the same customer ids, bill ids and
    event ids: each organisation's outputs are what its own events alone produce."""
    seen: dict[str, int] = {}  # the same producer-assigned event ids in both organisations
    numbered = []
    for event in events:
        org_id = event.get("org_id", "default")
        seen[org_id] = seen.get(org_id, 0) + 1
        numbered.append(
            {**event, "event_id": f"e{seen[org_id]}", "return_id": f"r{seen[org_id]}"}
            if event["type"] == "return"
            else {**event, "event_id": f"e{seen[org_id]}"}
        )
    together = _run(numbered)
    for org_id in ORGS:
        alone = _run([e for e in numbered if e.get("org_id", "default") == org_id])
        assert _outputs_of(together, org_id) == _outputs_of(alone, org_id)
    everything = sum((len(together.read(t)) for t in ("promotions", "late-events", "lifetime-points")), 0)
    assert everything == sum(len(v) for org_id in ORGS for v in _outputs_of(together, org_id).values())


# ----------------------------------------------------------------- definitions
def test_milestone_ids_are_unique_across_organisations_names_within_one():
    driver = TopologyTestDriver()
    load(driver, spend("home", name="Spend 500"), spend("brand", BRAND, name="Spend 500"))  # a name per organisation
    processed = driver.pipe("definitions", "home", spend("home", BRAND))
    assert processed.outcome == "invalid_definition"
    assert "taken by organisation 'default'" in driver.read("dead-letters")[-1]["detail"]
    assert driver.topology.registry.milestones["home"].definition.org_id == "default"
    processed = driver.pipe("definitions", "brand-2", spend("brand-2", BRAND, name="Spend 500"))
    assert processed.outcome == "invalid_definition"


def test_a_milestone_tracks_achievements_of_its_own_organisation_only():
    from .test_milestone_achieved import DAILY_STEPS, WEEKLY

    driver = TopologyTestDriver()
    load(driver, DAILY_STEPS)
    processed = driver.pipe("definitions", WEEKLY["milestone_id"], {**WEEKLY, "org_id": BRAND})
    assert processed.outcome == "invalid_definition"
    assert "belongs to another organisation" in driver.read("dead-letters")[-1]["detail"]
    load(driver, WEEKLY)
