"""Scheduled cycle close through the topology: the close index and close ticks.

Every enrolled customer gets exactly one cycle-close event per cycle, with or
without activity; a tick redelivered or cut short by a crash neither loses nor
repeats a close.
"""

import orjson

from milestream.pipeline.close_index import CloseIndex
from milestream.pipeline.driver import TopologyTestDriver
from milestream.settings import Settings
from milestream.state.keys import Namespace
from milestream.state.memory import MemoryStore
from tests.engine.builders import (
    at,
    behavioural,
    calendar,
    close,
    closes,
    definition,
    documents,
    enrolment,
    load,
    outputs,
    rolling,
    send,
    target,
    txn,
)
from tests.support.stores import RecordingStore

FEB_1 = "2024-02-01T00:00:00+05:30"
APR_2 = "2024-04-02T00:00:00+05:30"


def quarter(**fields):
    return definition(cycles=calendar("monthly", "2024-01-01", 3), targets=[target(value="5000")], **fields)


def test_every_customer_of_an_all_customers_milestone_gets_a_close_with_or_without_activity(driver):
    load(driver, quarter())
    send(driver, txn("buyer", "2024-01-05T10:00:00+05:30", "1200"))
    send(driver, behavioural("browser", "app_open", "2024-01-06T10:00:00+05:30"))  # counts for nothing
    close(driver, FEB_1)
    assert sorted(closes(driver)) == [("browser", 1, "0"), ("buyer", 1, "1200")]


def test_a_close_opens_the_next_cycle_so_quiet_customers_keep_getting_closes(driver):
    load(driver, quarter())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "1200"))
    close(driver, "2024-04-02T00:00:00+05:30")
    assert closes(driver) == [("c1", 1, "1200"), ("c1", 2, "0"), ("c1", 3, "0")]
    close(driver, "2025-01-01T00:00:00+05:30")  # the milestone has no fourth cycle
    assert len(closes(driver)) == 3


def test_explicit_and_listed_enrolment_get_closes_and_unenrolled_customers_do_not(driver):
    load(
        driver,
        quarter(milestone_id="none", enrolment={"method": "none"}),
        quarter(milestone_id="listed", enrolment={"method": "specific", "customers": ["ann", "bob"]}),
    )
    send(
        driver,
        enrolment("ann", "none", "2024-01-02T10:00:00+05:30"),
        enrolment("cid", "none", "2024-01-02T10:00:00+05:30"),
        enrolment("cid", "none", "2024-01-03T10:00:00+05:30", action="unenrol"),
        enrolment("ann", "listed", "2024-01-02T10:00:00+05:30"),
        enrolment("bob", "listed", "2024-01-02T10:00:00+05:30"),
    )
    send(driver, txn("dan", "2024-01-05T10:00:00+05:30", "9000"))  # not enrolled anywhere
    close(driver, FEB_1)
    got = sorted((e.milestone_id, e.customer_id) for e in outputs(driver) if e.kind == "cycle_close")
    assert got == [("listed", "ann"), ("listed", "bob"), ("none", "ann")]


def test_a_deactivated_milestone_closes_nothing_and_resumes_when_reactivated(driver):
    load(driver, quarter())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "1200"))
    status = {"type": "milestone_status", "milestone_id": "m1", "active": False}
    driver.pipe("definitions", "m1", status, timestamp=at("2024-01-10T00:00:00+05:30"))
    close(driver, FEB_1)
    assert closes(driver) == []
    driver.pipe("definitions", "m1", {**status, "active": True}, timestamp=at("2024-02-10T00:00:00+05:30"))
    close(driver, "2024-03-01T00:00:00+05:30")
    assert closes(driver) == [("c1", 2, "0")]


def test_a_tick_before_the_due_time_closes_nothing_and_writes_nothing(driver):
    load(driver, quarter())
    send(driver, txn("c1", "2024-01-05T10:00:00+05:30", "1200"))
    before = documents(driver.store)
    [processed] = close(driver, "2024-01-31T23:59:00+05:30")
    assert processed.outcome == "nothing_due" and documents(driver.store) == before


def test_rolling_cycles_close_within_a_quarter_hour_of_their_end(driver):
    load(driver, definition(cycles=rolling("daily", 3), targets=[target(value="5000")]))
    send(driver, txn("c1", "2024-01-05T10:07:00+05:30", "100"))
    close(driver, "2024-01-06T10:06:59+05:30")
    assert closes(driver) == []
    close(driver, "2024-01-06T10:15:00+05:30")
    assert closes(driver) == [("c1", 1, "100")]


def test_a_large_close_goes_in_batches_and_closes_each_customer_once():
    driver = TopologyTestDriver(Settings(close_batch_size=3))
    load(driver, quarter())
    for n in range(10):
        send(driver, txn(f"c{n}", "2024-01-05T10:00:00+05:30", "100"))
    ticks = close(driver, FEB_1)
    assert len(ticks) == 4  # 3 + 3 + 3 + 1, each continuation queued by the one before
    assert sorted(c for c, _, _ in closes(driver)) == sorted(f"c{n}" for n in range(10))


def test_partitions_have_their_own_index(driver):
    load(driver, quarter())
    driver.pipe("transactions", "p0", txn("p0", "2024-01-05T10:00:00+05:30"), partition=0)
    driver.pipe("transactions", "p1", txn("p1", "2024-01-05T10:00:00+05:30"), partition=1)
    close(driver, FEB_1, partition=1)
    assert [c for c, _, _ in closes(driver)] == ["p1"]
    close(driver, FEB_1, partition=0)
    assert [c for c, _, _ in closes(driver)] == ["p1", "p0"]


def test_a_redelivered_tick_re_emits_the_same_bytes_and_rewrites_what_it_wrote():
    driver = TopologyTestDriver(store=RecordingStore())
    load(driver, quarter())
    for n in range(3):
        send(driver, txn(f"c{n}", "2024-01-05T10:00:00+05:30", "100"))
    [first] = close(driver, FEB_1)
    customers = customer_documents(driver.store)
    tick = {"type": "close_tick", "schema_version": 1, "now": at(FEB_1).isoformat()}
    driver.store.puts.clear()
    again = driver.pipe("close-ticks", None, tick, partition=0, offset=0)
    writes = [key for key, _ in driver.store.puts]
    assert again.outcome == "duplicate"
    assert [r.value for r in again.records] == [r.value for r in first.records]
    # Written again (the first writes may be only local), with the same content.
    assert {*(Namespace.CUSTOMER.key(f"c{n}") for n in range(3)), Namespace.OUTBOX.key("c0")} <= set(writes)
    assert customer_documents(driver.store) == customers
    # The February entries written twice still close each customer's February once.
    close(driver, "2024-03-01T00:00:00+05:30")
    distinct = {e.event_id: e for e in outputs(driver) if e.kind == "cycle_close"}
    assert sorted((e.customer_id, e.cycle.index) for e in distinct.values()) == [
        (f"c{n}", c) for n in range(3) for c in (1, 2)
    ]


def customer_documents(store):
    """Customers' states and outboxes, not the close index."""
    return {k: v for k, v in documents(store).items() if k.namespace in (Namespace.CUSTOMER, Namespace.OUTBOX)}


class CrashingStore(MemoryStore):
    """Memory state that "crashes" (raises) at the n-th write: the writes before it survive."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.writes = 0
        self.crash_at = crash_at

    def _count(self):
        self.writes += 1
        if self.writes == self.crash_at:
            raise RuntimeError("crash")

    def put(self, key, state):
        self._count()
        super().put(key, state)

    def delete(self, key):
        self._count()
        super().delete(key)


def _run_with_crash_in_close(crash_after: int | None):
    store = CrashingStore(crash_at=0)
    driver = TopologyTestDriver(Settings(close_batch_size=4), store=store)
    load(driver, quarter())
    for n in range(6):
        send(driver, txn(f"c{n}", "2024-01-05T10:00:00+05:30", "100" if n % 2 else "6000"))
        if n < 3:  # their February cycle is indexed before the close: one tick closes two cycles of theirs
            send(driver, txn(f"c{n}", "2024-02-05T10:00:00+05:30", "100"))
    published = list(outputs(driver))
    # Three months late (a worker catching up): every customer's three cycles close.
    tick = {"type": "close_tick", "schema_version": 1, "now": at(APR_2).isoformat()}
    if crash_after is not None:
        store.crash_at = store.writes + crash_after
        try:
            driver.pipe("close-ticks", None, tick, partition=0, offset=0)
            return None, driver  # the tick needs fewer writes than that
        except RuntimeError:
            store.crash_at = 0
        driver.produced.clear()  # a crashed attempt published nothing
    # The tick is redelivered (same offset), then the continuation and later ticks follow.
    driver.pipe("close-ticks", None, tick, partition=0, offset=0)
    close(driver, APR_2)
    return published + list(outputs(driver)), driver


def test_a_tick_cut_short_by_a_crash_at_any_write_neither_loses_nor_repeats_a_close():
    clean, _ = _run_with_crash_in_close(None)
    assert len([e for e in clean if e.kind == "cycle_close"]) == 6 * 3
    expected = sorted(orjson.dumps(e.model_dump(mode="json")) for e in clean if e.kind == "cycle_close")
    for crash_after in range(1, 1000):
        events, driver = _run_with_crash_in_close(crash_after)
        if events is None:
            break
        got = sorted(orjson.dumps(e.model_dump(mode="json")) for e in events if e.kind == "cycle_close")
        assert set(got) == set(expected), f"crash after {crash_after} writes"
        assert len({orjson.loads(e)["event_id"] for e in got}) == 6 * 3
        assert CloseIndex(driver.store, 0).directory()["s"] == []
    assert crash_after > 20  # every write of the tick was a crash point


def test_customers_on_a_specific_list_are_enrolled_by_events_the_definition_produces(driver):
    body = quarter(enrolment={"method": "specific", "customers": ["ann", "bob"]})
    processed = driver.pipe("definitions", "m1", body, timestamp=at("2024-01-10T00:00:00+05:30"))
    enrolments = [orjson.loads(r.value) for r in processed.records if r.topic == driver.topic("enrolments")]
    assert [(e["customer_id"], e["event_time"]) for e in enrolments] == [
        ("ann", "2023-12-31T18:30:00.000000Z"),
        ("bob", "2023-12-31T18:30:00.000000Z"),
    ]  # the audience, from the start
    edited = {**body, "enrolment": {"method": "specific", "customers": ["ann", "bob", "cat"]}}
    processed = driver.pipe("definitions", "m1", edited, timestamp=at("2024-01-20T00:00:00+05:30"))
    added = [orjson.loads(r.value) for r in processed.records if r.topic == driver.topic("enrolments")]
    assert [(e["customer_id"], e["event_time"]) for e in added] == [
        ("cat", "2024-01-19T18:30:00.000000Z")
    ]  # from the edit on
    for event in enrolments + added:
        driver.pipe("enrolments", event["customer_id"], event)
    close(driver, FEB_1)
    assert sorted(c for c, _, _ in closes(driver)) == ["ann", "bob", "cat"]


def test_enrolling_before_the_first_cycle_opens_that_cycle(driver):
    load(
        driver,
        definition(
            cycles={"kind": "custom", "periods": [{"start": "2024-03-01", "end": "2024-03-31"}]},
            enrolment={"method": "specific", "customers": ["c9"]},
        ),
    )
    send(driver, enrolment("c1", "m1", "2024-01-15T10:00:00+05:30"))
    close(driver, "2024-04-01T00:00:00+05:30")
    assert closes(driver) == [("c1", 1, "0")]


def test_changing_the_enrolment_method_keeps_existing_enrolments(driver):
    load(driver, quarter())  # "all customers"
    send(driver, txn("active", "2024-01-05T10:00:00+05:30", "100"))
    send(driver, behavioural("quiet", "app_open", "2024-01-06T10:00:00+05:30"))
    load(driver, quarter(enrolment={"method": "specific", "customers": ["listed"]}))
    send(driver, enrolment("listed", "m1", "2024-01-07T10:00:00+05:30"))
    send(driver, txn("newcomer", "2024-01-08T10:00:00+05:30", "100"))  # not on the list: not enrolled
    close(driver, FEB_1)
    assert sorted(c for c, _, _ in closes(driver)) == ["active", "listed", "quiet"]
