"""Backfill through the topology: copies of past records applied to one milestone created since.

The reference is the simulator run as if the milestone had existed all along: the worker
that applied the records live without it, then the copies, must end with the same outputs
(same ids, same values), each counted once, whatever the order of copies and live records.
"""

from __future__ import annotations

import io
from datetime import datetime

import orjson
import pytest

from milestream import simulate
from milestream.pipeline.backfill import HEADER_MILESTONE, MilestoneNotLoaded, source_headers
from milestream.pipeline.driver import TopologyTestDriver
from tests.engine.builders import (
    TOPIC_OF,
    at,
    bill_return,
    calendar,
    close,
    definition,
    enrolment,
    line,
    load,
    target,
    txn,
)

MILESTONE = "m-back"
COPIED = "2024-03-15T00:00:00+05:30"  # when the tests' backfill runs


def backdated(**fields):
    """Monthly 3,000 spend from January, with return prorating: created in March in these tests."""
    fields = {"settings": {"line_item_return": "prorate"}, **fields}
    return definition(
        milestone_id=MILESTONE, cycles=calendar("monthly", "2024-01-01", 6), targets=[target(value="3000")], **fields
    )


class Upstream:
    """Feeds the driver like the input topics feed a worker, and keeps what it fed for copies."""

    def __init__(self, driver: TopologyTestDriver) -> None:
        self.driver = driver
        self.records: list[tuple[str, bytes, bytes, datetime, int]] = []  # topic, key, value, time, offset

    def send(self, event: dict, recorded: str | None = None) -> None:
        logical = TOPIC_OF[event["type"]]
        name = self.driver.topic(logical)
        offset = self.driver._offsets[f"{name}/0"]
        moment = at(recorded or event["event_time"])
        value = orjson.dumps(event)
        processed = self.driver.pipe(logical, event["customer_id"], value, timestamp=moment)
        assert processed.outcome in ("applied", "no_output"), processed.outcome
        self.records.append((name, event["customer_id"].encode(), value, moment, offset))

    def copy(
        self, milestone_id: str = MILESTONE, run: str = "run-1", *, only=None, when: str = COPIED, end: bool = True
    ) -> list[str]:
        """Copy the records fed so far (or ``only`` those indexes) to the backfill topic, between markers
        written ``when`` (no end marker unless ``end``)."""
        outcomes = [self._marker(milestone_id, run, "start", when)]
        for i, (topic, key, value, moment, offset) in enumerate(self.records):
            if only is None or i in only:
                processed = self.driver.pipe(
                    "backfill",
                    key,
                    value,
                    timestamp=moment,
                    headers=source_headers(milestone_id, run, f"{topic}/0/{offset}"),
                )
                outcomes.append(processed.outcome)
        if end:
            outcomes.append(self.end(milestone_id, run, when))
        return outcomes

    def end(self, milestone_id: str = MILESTONE, run: str = "run-1", when: str = COPIED) -> str:
        return self._marker(milestone_id, run, "end", when)

    def _marker(self, milestone_id: str, run: str, marker: str, when: str) -> str:
        body = {"type": "backfill_marker", "milestone_id": milestone_id, "run_id": run, "marker": marker}
        headers = source_headers(milestone_id, run)
        return self.driver.pipe("backfill", None, body, timestamp=at(when), headers=headers).outcome


def milestone_events(driver) -> list[dict]:
    return [e for e in driver.read("promotions") if e.get("milestone_id") == MILESTONE]


def comparable(events: list[dict]) -> list[tuple]:
    """What must match the simulator: ids and values (not the cause: the simulator numbers its own offsets)."""
    return sorted((e["event_id"], e["kind"], e["achieved_value"], e["cycle"]["index"]) for e in events)


def simulated(definitions: list[dict], events: list[dict], until: str) -> list[dict]:
    out = io.BytesIO()
    lines = io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in events))
    simulate.run(definitions, lines, out, io.StringIO(), until=at(until))
    found = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return [e for e in found if e.get("type") == "milestone_event" and e["milestone_id"] == MILESTONE]


@pytest.fixture
def upstream(driver):
    return Upstream(driver)


JAN = [
    txn("c1", "2024-01-05T10:00:00+05:30", "2000", bill_id="b1"),
    txn("c1", "2024-01-20T10:00:00+05:30", "1500", bill_id="b2"),
    txn("c2", "2024-01-21T10:00:00+05:30", "800"),
]
FEB = [txn("c1", "2024-02-10T10:00:00+05:30", "1000"), txn("c2", "2024-02-11T10:00:00+05:30", "3100")]
MAR = [txn("c1", "2024-03-12T10:00:00+05:30", "2500"), txn("c2", "2024-03-13T10:00:00+05:30", "100")]
CREATED = "2024-03-10T00:00:00+05:30"
LATER = "2024-05-02T00:00:00+05:30"


def test_a_backfill_gives_the_outputs_of_the_milestone_having_existed_all_along(driver, upstream):
    for event in JAN + FEB:
        upstream.send(event)
    close(driver, CREATED)  # nothing of the milestone to close yet
    load(driver, backdated())
    for event in MAR:
        upstream.send(event)  # live, with the milestone
    outcomes = upstream.copy()
    assert outcomes.count("backfilled") == len(JAN + FEB) and outcomes.count("backfill_skipped") == len(MAR)
    close(driver, LATER)
    expected = simulated([backdated()], JAN + FEB + MAR, LATER)
    assert comparable(milestone_events(driver)) == comparable(expected)
    assert {e["kind"] for e in expected} == {"achievement", "cycle_close"}
    backfilled = [e for e in milestone_events(driver) if e.get("backfilled")]
    # Past achievements as of the record that reached them; past closes as of their due time.
    assert ("achievement", "2024-01-20T04:30:00.000000Z") in {(e["kind"], e["backfill_as_of"]) for e in backfilled}
    assert {e["backfill_as_of"] for e in backfilled if e["kind"] == "cycle_close"} == {
        "2024-01-31T18:30:00.000000Z",
        "2024-02-29T18:30:00.000000Z",
    }
    live_closes = [e for e in milestone_events(driver) if e["kind"] == "cycle_close" and not e.get("backfilled")]
    assert {e["cycle"]["index"] for e in live_closes} == {3, 4}  # due after the backfill ended


def test_a_second_run_emits_nothing_new(driver, upstream):
    for event in JAN + FEB:
        upstream.send(event)
    load(driver, backdated())
    upstream.copy()
    close(driver, LATER)
    before = list(driver.produced[driver.topic("promotions")])
    outcomes = upstream.copy(run="run-2")
    close(driver, LATER)
    assert outcomes.count("backfilled") == 0
    assert driver.produced[driver.topic("promotions")] == before


def test_a_run_stopped_half_way_and_run_again_counts_each_record_once(driver, upstream):
    for event in JAN + FEB:
        upstream.send(event)
    load(driver, backdated())
    upstream.copy(only={0, 1})  # copied, but no end marker here would hold closes: see the next test
    upstream.copy(run="run-2")  # the re-run copies everything again
    close(driver, LATER)
    expected = simulated([backdated()], JAN + FEB, LATER)
    assert comparable(milestone_events(driver)) == comparable(expected)


def test_closes_wait_while_a_run_is_under_way(driver, upstream):
    for event in JAN:
        upstream.send(event)
    load(driver, backdated())
    upstream.copy(end=False)
    close(driver, LATER)  # due, but the run has not ended
    assert [e["kind"] for e in milestone_events(driver)] == ["achievement"]  # sent at once, as live
    upstream.end()
    close(driver, LATER)
    closed = {(e["customer_id"], e["cycle"]["index"]) for e in milestone_events(driver) if e["kind"] == "cycle_close"}
    assert closed == {(c, i) for c in ("c1", "c2") for i in (1, 2, 3, 4)}


def test_a_copy_live_processing_has_not_read_yet_is_left_to_it(driver, upstream):
    load(driver, backdated())
    event = txn("c1", "2024-03-12T10:00:00+05:30", "3500")
    name = driver.topic("transactions")
    # The copy of offset 0 arrives before live processing reads offset 0.
    copy = driver.pipe(
        "backfill",
        "c1",
        orjson.dumps(event),
        timestamp=at(event["event_time"]),
        headers=source_headers(MILESTONE, "r", f"{name}/0/0"),
    )
    assert copy.outcome == "backfill_skipped"
    upstream.send(event)
    assert [e["kind"] for e in milestone_events(driver)] == ["achievement"]


def test_a_return_of_a_bill_from_before_the_milestone_adjusts_it(driver, upstream):
    upstream.send(txn("c1", "2024-01-05T10:00:00+05:30", "2000", bill_id="b1", line_items=[line("l1", "2000")]))
    upstream.send(
        bill_return(
            "c1",
            "2024-01-06T10:00:00+05:30",
            bill_id="b1",
            scope="line_items",
            line_items=[{"line_id": "l1", "amount": "1000"}],
        )
    )
    upstream.send(txn("c1", "2024-02-03T10:00:00+05:30", "3000"))
    load(driver, backdated())
    upstream.copy()
    close(driver, LATER)
    expected = simulated(
        [backdated()], [json for _, _, raw, _, _ in upstream.records for json in [orjson.loads(raw)]], LATER
    )
    assert comparable(milestone_events(driver)) == comparable(expected)
    february = [e for e in milestone_events(driver) if e["kind"] == "cycle_close" and e["cycle"]["index"] == 2]
    assert february[0]["achieved_value"] == "1500.00"  # 3,000 less half the 3,000 target carried from January


def test_a_copy_of_an_unknown_milestone_is_retried_not_dead_lettered(driver):
    body = {"type": "backfill_marker", "milestone_id": "nope", "run_id": "r", "marker": "start"}
    with pytest.raises(MilestoneNotLoaded):
        driver.pipe("backfill", None, body, headers=source_headers("nope", "r"))


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([], "needs the milestream.backfill"),
        (source_headers(MILESTONE, "r", "milestream.transactions/3/0"), "must be on partition 3"),
        (source_headers(MILESTONE, "r", "milestream.promotions/0/0"), "names no record of a customer input topic"),
        (source_headers(MILESTONE, "r", "milestream.transactions/0/x"), "names no record"),
    ],
)
def test_a_malformed_copy_is_dead_lettered_with_the_reason(driver, headers, detail):
    load(driver, backdated())
    event = txn("c1", "2024-03-12T10:00:00+05:30", "3500")
    processed = driver.pipe("backfill", "c1", event, headers=headers)
    assert processed.outcome == "schema_violation"
    assert detail in driver.read("dead-letters")[-1]["detail"]
    assert HEADER_MILESTONE == "milestream.backfill"


def test_live_records_during_a_run_count_after_the_older_copies_as_in_time_order(driver, upstream):
    for event in JAN:
        upstream.send(event)
    load(driver, backdated())
    upstream.copy(end=False, only=set())  # the run starts; nothing copied yet
    late_january = txn("c1", "2024-01-25T10:00:00+05:30", "200")
    upstream.send(late_january)  # live during the run: kept for the milestone
    assert [e["kind"] for e in milestone_events(driver)] == []
    upstream.copy(run="run-1", end=True, only={0, 1, 2})
    close(driver, LATER)
    expected = simulated([backdated()], [*JAN, late_january], LATER)
    assert comparable(milestone_events(driver)) == comparable(expected)
    (award,) = [e for e in milestone_events(driver) if e["kind"] == "achievement"]
    assert award["achieved_value"] == "3500"  # reached by the 20 January bill, not the later live one


def test_an_enrolment_during_a_run_waits_for_the_run(driver, upstream):
    load(driver, backdated(enrolment={"method": "none"}))
    upstream.copy(end=False, only=set())
    upstream.send(enrolment("c9", MILESTONE, "2024-01-03T10:00:00+05:30"))
    upstream.send(txn("c9", "2024-01-04T10:00:00+05:30", "3100"))
    assert milestone_events(driver) == []
    upstream.end()
    assert [e["kind"] for e in milestone_events(driver)] == ["achievement"]


def test_end_of_cycle_award_mode_sends_past_awards_with_the_past_closes(driver, upstream):
    end_of_cycle = backdated(settings={"line_item_return": "prorate", "award_when_target_achieved": False})
    for event in JAN + FEB:
        upstream.send(event)
    load(driver, end_of_cycle)
    upstream.copy(end=False)
    assert milestone_events(driver) == []  # nothing until the cycles close, and they wait for the run
    upstream.end()
    close(driver, LATER)
    expected = simulated([end_of_cycle], JAN + FEB, LATER)
    assert comparable(milestone_events(driver)) == comparable(expected)
    past = [e for e in milestone_events(driver) if e["cycle"]["index"] <= 2]
    # The award is the close itself in this mode: c1's January (3,500) and c2's February (3,100).
    assert {(e["customer_id"], e["cycle"]["index"]) for e in past if e["achieved"]} == {("c1", 1), ("c2", 2)}
    assert all(e["backfilled"] and e["backfill_as_of"] for e in past)


def test_a_milestone_created_to_be_backfilled_keeps_its_live_records_until_its_first_run_ends(driver, upstream):
    for event in JAN:
        upstream.send(event)
    load(driver, backdated(backfill=True))
    late_january = txn("c1", "2024-01-25T10:00:00+05:30", "200")
    upstream.send(late_january)  # after the creation, before any run: kept
    close(driver, LATER)  # and no close either
    assert milestone_events(driver) == []
    upstream.copy()
    close(driver, LATER)
    assert comparable(milestone_events(driver)) == comparable(simulated([backdated()], [*JAN, late_january], LATER))
    upstream.send(txn("c2", "2024-05-10T10:00:00+05:30", "3000"))  # the run has ended: live again
    assert [e["kind"] for e in milestone_events(driver)][-1] == "achievement"


def test_the_simulator_applies_a_milestone_created_to_be_backfilled_at_once():
    assert comparable(simulated([backdated(backfill=True)], JAN, LATER)) == comparable(
        simulated([backdated()], JAN, LATER)
    )
    assert simulated([backdated(backfill=True)], JAN, LATER)


def test_the_read_side_follows_the_backfilled_milestone_and_names_the_original_records(driver, upstream):
    from milestream.pipeline import history
    from milestream.pipeline.read_index import indexed
    from milestream.state.keys import Customer
    from tests.engine.builders import customer_state

    for event in JAN + MAR:
        upstream.send(event)
    load(driver, backdated())
    upstream.copy()
    progress = indexed(customer_state(driver, "c1"))[MILESTONE]
    assert progress["o"]["3"] == {"t1": "2500"}  # March, open: its one bill
    kept = history.read(driver.store, Customer("default", "c1"), MILESTONE)
    sources = {e["src"] for entries in kept.values() for e in entries}
    assert f"{driver.topic('transactions')}/0/0" in sources  # the bill of 5 January, as recorded
