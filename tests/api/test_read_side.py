"""Read models and the indexes behind them, against the engine on the spec's examples."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milestream.api import read_models
from milestream.engine.core import progress_value
from milestream.engine.measures import accumulation
from milestream.engine.registry import GROUP
from milestream.pipeline import history, leaderboards, read_index
from milestream.settings import Settings
from milestream.state.base import key_id
from milestream.state.keys import Customer, customers_in, in_changelog
from milestream.state.memory import MemoryStore
from tests.api.support import Cluster
from tests.factories import at, monthly_gross_definition, transaction

JAN = "2024-01-05T10:00:00+05:30"
NOW = at("2024-01-20T12:00:00+05:30")


def spend_definition(**overrides):
    definition = monthly_gross_definition(**overrides)
    definition["group"]["targets"][0]["sub_targets"] = [{"name": "Halfway", "criterion": "percentage", "value": "50"}]
    return definition


def progress(cluster: Cluster, customer: str, milestone: str = "m-monthly"):
    state = next(
        s.get(Customer("default", customer).state_key)
        for s in cluster.stores.values()
        if s.get(Customer("default", customer).state_key)
    )
    compiled = cluster.topology.registry.milestones[milestone]
    return read_models.milestone_progress(cluster.topology.engine, compiled, state["m"][milestone], customer, NOW)


def test_progress_is_what_the_engine_awards_on_the_spec_example():
    cluster = Cluster()
    cluster.pipe("definitions", "m-monthly", spend_definition(), at(JAN))
    cluster.pipe("transactions", "c1", transaction("c1", "3000", JAN, 1), at(JAN))
    halfway = progress(cluster, "c1")
    target = halfway.current_cycle.targets[0]
    assert (target.achieved, target.defined, target.gap, target.reached) == ("3000", "5000", "2000", False)
    assert [(s.name, s.value, s.reached) for s in target.sub_targets] == [("Halfway", "2500", True)]
    processed = cluster.pipe("transactions", "c1", transaction("c1", "2500", JAN, 2), at(JAN))
    award = next(e for e in processed.milestone_events if e["kind"] == "achievement")
    done = progress(cluster, "c1")
    target = done.current_cycle.targets[0]
    assert (target.achieved, target.defined, target.gap) == (
        award["achieved_value"],
        award["defined_value"],
        award["gap"],
    )
    assert target.reached and done.current_cycle.achievements == ["spend"]
    assert done.current_cycle.cycle.model_dump() == award["cycle"]
    assert done.enrolment.enrolled and done.status == "live"


def test_a_customers_own_target_and_the_closed_cycles():
    cluster = Cluster()
    cluster.pipe("definitions", "m-monthly", spend_definition(enrolment={"method": "none"}), at(JAN))
    enrolment = {
        "type": "enrolment",
        "event_id": "e1",
        "customer_id": "c2",
        "event_time": JAN,
        "milestone_id": "m-monthly",
        "targets": [{"target_id": "spend", "value": "8000"}],
    }
    cluster.pipe("enrolments", "c2", enrolment, at(JAN))
    cluster.pipe("transactions", "c2", transaction("c2", "6000", JAN, 1), at(JAN))
    target = progress(cluster, "c2").current_cycle.targets[0]
    assert (target.defined, target.gap, target.reached, target.overridden) == ("8000", "2000", False, True)
    assert target.sub_targets[0].value == "4000"
    cluster.tick(at("2024-02-02T00:00:00+05:30"))
    closed = read_models.milestone_progress(
        cluster.topology.engine,
        cluster.topology.registry.milestones["m-monthly"],
        next(s for s in cluster.stores.values() if s.get(Customer("default", "c2").state_key)).get(
            Customer("default", "c2").state_key
        )["m"]["m-monthly"],
        "c2",
        at("2024-02-02T00:00:00+05:30"),
    )
    assert [(c.index, c.values) for c in closed.closed_cycles] == [(1, {"spend": "6000"})]
    assert closed.current_cycle.cycle.index == 2 and closed.current_cycle.targets[0].achieved == "0"


def test_history_keeps_each_contribution_late_refusals_and_its_bound():
    cluster = Cluster(Settings(history_per_cycle=3))
    cluster.pipe("definitions", "m-monthly", spend_definition(), at(JAN))
    for n in range(5):
        cluster.pipe("transactions", "c1", transaction("c1", f"{100 + n}", JAN, n), at(JAN))
    customer = Customer("default", "c1")
    store = next(s for s in cluster.stores.values() if s.get(customer.state_key))
    kept = history.read(store, customer, "m-monthly")
    assert [e["d"] for e in kept["1"]] == [{"spend": "102"}, {"spend": "103"}, {"spend": "104"}]
    assert kept["1"][-1]["id"] == "txn-c1-4" and kept["1"][-1]["type"] == "transaction"
    # Recorded in March for a January cycle with no buffer: refused as late.
    cluster.pipe("transactions", "c1", transaction("c1", "50", JAN, 9), at("2024-03-01T00:00:00+05:30"))
    entry = history.read(store, customer, "m-monthly")["1"][-1]
    assert entry["late"] is True and entry["id"] == "txn-c1-9" and "d" not in entry
    shown = read_models.milestone_history(
        "c1", "default", "m-monthly", history.read(store, customer, "m-monthly"), 3, 3
    )
    assert shown.cycles[0].contributions[-1].late and shown.cycles[0].contributions[0].source.offset >= 0


def brute_force(cluster: Cluster, milestone: str, target: str, cycle: int) -> list[tuple[Decimal, str]]:
    """Every enrolled customer's value in the cycle, from their state, ranked by value then id."""
    engine = cluster.topology.engine
    compiled = cluster.topology.registry.milestones[milestone]
    kpi = next(t for t in compiled.targets if t.target_id == target).kpi
    rows = []
    for store in cluster.stores.values():
        for customer in customers_in(store):
            ms = store.get(customer.state_key)["m"].get(milestone)
            if ms is None or not engine.is_enrolled(compiled, ms, customer.customer_id):
                continue
            standing = ms.get("c", {}).get(str(cycle))
            if standing is not None:
                rows.append((progress_value(standing["t"].get(target, {}), accumulation(kpi)), customer.customer_id))
    return sorted(rows, key=lambda row: (-row[0], row[1]))


def index_ranking(cluster: Cluster, milestone: str, target: str, cycle: int) -> list[tuple[Decimal, str]]:
    heads = [
        entry
        for store in cluster.stores.values()
        for entry in leaderboards.head(store, milestone, target, cycle, 10**6)
    ]
    return [(e.value, e.customer_id) for e in sorted(heads)]


def test_the_leaderboard_index_ranks_as_a_brute_force_ranking_of_the_state():
    rng = random.Random(7)
    cluster = Cluster()
    cluster.pipe("definitions", "m-monthly", spend_definition(settings={"leaderboard": True}), at(JAN))
    customers = [f"c{n:02d}" for n in range(40)]
    when = at(JAN)
    for n in range(400):
        customer = rng.choice(customers)
        amount = rng.choice(["10", "25.5", "100", "0.000001", "999"])
        when += timedelta(minutes=1)
        cluster.pipe("transactions", customer, transaction(customer, amount, when.isoformat(), n), when)
        if n % 10 == 0:  # the same customer id in another organisation: another customer
            cluster.pipe(
                "transactions", customer, transaction(customer, amount, when.isoformat(), n, org_id="acme"), when
            )
        if n % 50 == 0:  # a whole-bill return now and then, with adjustments on
            cluster.pipe(
                "returns",
                customer,
                {
                    "type": "return",
                    "event_id": f"r{n}",
                    "customer_id": customer,
                    "event_time": when.isoformat(),
                    "return_id": f"r{n}",
                    "bill_id": f"bill-{customer}-{n}",
                    "scope": "bill",
                },
                when,
            )
    expected = brute_force(cluster, "m-monthly", "spend", 1)
    assert len(expected) > 30
    assert index_ranking(cluster, "m-monthly", "spend", 1) == expected
    for value, customer in expected[::7]:
        rank = expected.index((value, customer)) + 1
        key = leaderboards.entry_key("m-monthly", "spend", 1, value, customer)
        ahead = sum(
            leaderboards.around(store, "m-monthly", "spend", 1, key, 0).ahead for store in cluster.stores.values()
        )
        assert ahead + 1 == rank
    # The cycle closes: its final standing stays on the board, the next cycle starts empty.
    cluster.tick(at("2024-02-01T00:00:00+05:30"))
    assert index_ranking(cluster, "m-monthly", "spend", 1) == expected
    assert index_ranking(cluster, "m-monthly", "spend", 2) == [
        (Decimal(0), c) for _, c in sorted(expected, key=lambda r: r[1])
    ]


def _changelog(store: MemoryStore) -> dict[bytes, bytes]:
    """What the checkpoint sends of a store: every key but the leaderboard entries."""
    return {key: value for key, value in store._data.items() if in_changelog(key)}


def _entries(store: MemoryStore) -> set[bytes]:
    return {key for key in store._data if not in_changelog(key)}


def _restore(store: MemoryStore, records: dict[bytes, bytes | None]) -> None:
    """What runtime/partitions.py writes for a batch of changelog records: them, and the
    leaderboard entries their state records imply."""
    changes = {**records, **read_index.restored_board_changes(records, store)}
    for key, value in changes.items():
        if value is None:
            store._delete(key)
        else:
            store._put(key, value)


def test_a_restore_derives_the_leaderboard_entries_from_the_state_records():
    """The entries are never in the changelog. A store restored from it, in batches of any size (the
    last value of each key a batch changed) onto what it held, or from scratch (the compacted topic,
    then the entries derived at the end), holds the very entries the processing store holds:
    returns, a second milestone of two targets, a cycle close."""
    rng = random.Random(11)
    cluster = Cluster()
    cluster.pipe("definitions", "m-monthly", spend_definition(settings={"leaderboard": True}), at(JAN))
    two = spend_definition(milestone_id="m-two", settings={"leaderboard": True})
    visits = {**two["group"]["targets"][0], "target_id": "visits", "name": "Visits", "kpi": "count", "value": "5"}
    visits.pop("sub_targets")
    two["group"]["targets"].append(visits)
    assert cluster.pipe("definitions", "m-two", two, at(JAN)).outcome == "applied"
    acme = spend_definition(milestone_id="m-acme", org_id="acme", settings={"leaderboard": True})
    assert cluster.pipe("definitions", "m-acme", acme, at(JAN)).outcome == "applied"
    restored = {p: MemoryStore() for p in cluster.stores}
    seen: dict[int, dict[bytes, bytes]] = {p: {} for p in cluster.stores}
    pending: dict[int, dict[bytes, bytes | None]] = {p: {} for p in cluster.stores}

    def follow(flush: bool) -> None:
        for p, store in cluster.stores.items():
            now = _changelog(store)
            pending[p].update({k: v for k, v in now.items() if seen[p].get(k) != v})
            pending[p].update({k: None for k in seen[p] if k not in now})
            seen[p] = now
            if flush:
                _restore(restored[p], pending[p])
                pending[p] = {}

    customers = [f"c{n:02d}" for n in range(25)]
    when = at(JAN)
    for n in range(300):
        customer = rng.choice(customers)
        when += timedelta(minutes=1)
        amount = rng.choice(["10", "25.5", "999"])
        cluster.pipe("transactions", customer, transaction(customer, amount, when.isoformat(), n), when)
        if n % 10 == 0:  # the same customer id in another organisation: another customer
            cluster.pipe(
                "transactions", customer, transaction(customer, amount, when.isoformat(), n, org_id="acme"), when
            )
        if n % 40 == 0:  # a whole-bill return now and then
            back = {"type": "return", "event_id": f"r{n}", "customer_id": customer, "event_time": when.isoformat()}
            back.update(return_id=f"r{n}", bill_id=f"bill-{customer}-{n}", scope="bill")
            cluster.pipe("returns", customer, back, when)
        follow(flush=rng.random() < 0.2)
    february = at("2024-02-01T10:00:00+05:30")
    cluster.tick(february)
    cluster.pipe("transactions", "c01", transaction("c01", "5", february.isoformat(), 999), february)
    follow(flush=True)
    for p, store in cluster.stores.items():
        assert _entries(restored[p]) == _entries(store)
        fresh = MemoryStore()  # from scratch: the records, then the entries their last versions imply
        for key, value in _changelog(store).items():
            fresh._put(key, value)
        for entries in read_index.derived_board_entries(fresh, batch=20):
            for key, value in entries.items():
                fresh._put(key, value)  # type: ignore[arg-type]
        assert _entries(fresh) == _entries(store)
    entries = [key_id(k) for store in cluster.stores.values() for k in _entries(store)]
    assert any(e.startswith(leaderboards.board_prefix("m-two", GROUP, 1)) for e in entries)  # the group board
    assert any(e.startswith(leaderboards.board_prefix("m-acme", "spend", 1)) for e in entries)  # another org's
    assert any(e.startswith(leaderboards.board_prefix("m-monthly", "spend", 2)) for e in entries)  # the next cycle


def test_without_the_setting_there_is_no_index():
    cluster = Cluster()
    cluster.pipe("definitions", "m-monthly", spend_definition(), at(JAN))
    cluster.pipe("transactions", "c1", transaction("c1", "10", JAN, 1), at(JAN))
    assert index_ranking(cluster, "m-monthly", "spend", 1) == []


def test_entry_keys_sort_by_value_descending_then_customer():
    values = ["-5", "0", "0.000001", "3", "1000000", "25.5"]
    keys = sorted(leaderboards.entry_key("m", "t", 1, Decimal(v), c) for v in values for c in ("b", "a"))
    parsed = [(leaderboards.parse(k).value, leaderboards.parse(k).customer_id) for k in keys]
    assert parsed == sorted(parsed, key=lambda row: (-row[0], row[1]))
    assert leaderboards.parse(keys[0]).value == Decimal("1000000")


@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None)
    | st.decimals(min_value=-(10**26), max_value=10**26, places=9, allow_nan=False, allow_infinity=False)
)
def test_descending_digits_are_the_floor_of_the_scaled_value_clamped(value):
    """The integer arithmetic of the key's value digits against the plain decimal formula: rounded down
    (a negative value with more than six decimals included), clamped to the key's 31 digits."""
    scaled = int((value * leaderboards.SCALE).to_integral_value(rounding=ROUND_FLOOR))
    expected = min(max(leaderboards.OFFSET - scaled, 0), 2 * leaderboards.OFFSET - 1)
    assert leaderboards._descending(value) == f"{expected:031d}"


@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None)
    | st.decimals(min_value=-(10**6), max_value=10**8, places=9, allow_nan=False, allow_infinity=False)
)
def test_entry_keys_read_off_a_value_text_are_those_of_its_decimal(value):
    """The read index makes keys from its values' text (``format(value, "f")``) by integer arithmetic:
    exactly the floor of the scaled value, clamped, as the decimal route computes it."""
    text = format(value, "f")
    with localcontext() as exact:
        exact.prec = 200
        scaled = int((Decimal(text) * leaderboards.SCALE).to_integral_value(rounding=ROUND_FLOOR))
    expected = f"{min(max(leaderboards.OFFSET - scaled, 0), 2 * leaderboards.OFFSET - 1):031d}"
    assert leaderboards._descending_text(text) == expected
    key = leaderboards.text_entry_key("m", "t", 3, text, "c")
    assert key == f"m\x00t\x00003\x00{expected}\x00c"
    if abs(value) < 10**20:  # within the decimal context's precision, both routes agree
        assert key == leaderboards.entry_key("m", "t", 3, Decimal(text), "c")


@pytest.mark.parametrize(
    "scaled", [-(10**31), -1, 0, 1, 2, 10**18 - 1, 10**18, 10**18 + 1, 10**30 - 1, 10**30, 2 * 10**30, 10**40]
)
def test_value_digits_either_side_of_machine_sized_arithmetic(scaled):
    """Scaled values up to 10**18 take integers of a machine word; the others the 31-digit route."""
    expected = min(max(leaderboards.OFFSET - scaled, 0), 2 * leaderboards.OFFSET - 1)
    assert leaderboards._inverted(scaled) == f"{expected:031d}"


@pytest.mark.parametrize("text", ["5.", "+5", " 5", "1e3", "-0", "-0.0000001", "0.0000001", "٣", "-.5", "1E-7"])
def test_other_value_texts_take_the_decimal_route(text):
    assert leaderboards._descending_text(text) == leaderboards._descending(Decimal(text))


VALUE_TEXTS = st.sampled_from(["0", "5", "5.0", "12.5", "-3", "999.999999"])
CYCLE_VALUES = st.dictionaries(
    st.sampled_from(["1", "2", "3"]), st.dictionaries(st.sampled_from(["t", "u"]), VALUE_TEXTS)
)
PROGRESS_ENTRIES = st.fixed_dictionaries(
    {"o": CYCLE_VALUES},
    optional={"l": st.just(1), "x": CYCLE_VALUES},
)


@given(PROGRESS_ENTRIES, PROGRESS_ENTRIES)
def test_the_keys_a_progress_entry_loses_and_gains_are_the_difference_of_its_keys(was, now):
    """Whichever way ``_board_moves`` takes (newly on a board, open values moved, the whole
    comparison), what it removes and adds turns the keys ``was`` implies into those ``now`` does."""

    def keys(entry):
        return read_index._board_keys("m", "c", read_index._board_values(entry))

    lost, gained = read_index._board_moves("m", "c", was, now)
    assert not lost & gained
    assert lost <= keys(was) and not gained & keys(was)
    assert (keys(was) - lost) | gained == keys(now)
