"""`milestream simulate`: the engine over a file, event time as the clock."""

import io
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson

from milestream.simulate import run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def simulate(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "milestream.cli",
            "simulate",
            "--definitions",
            str(EXAMPLES / "monthly-spend.json"),
            "--events",
            str(EXAMPLES / "events.jsonl"),
            *extra,
        ],
        capture_output=True,
        check=True,
    )


def test_two_runs_are_byte_identical():
    first, second = simulate("--close-all"), simulate("--close-all")
    assert first.stdout == second.stdout and first.stdout


def printed(result: subprocess.CompletedProcess, type_: str = "milestone_event") -> list[dict]:
    return [e for e in map(orjson.loads, result.stdout.splitlines()) if e["type"] == type_]


def test_cycles_close_as_event_time_passes_them():
    events = printed(simulate())
    kinds = [(e["kind"], e["customer_id"], e["cycle"]["index"]) for e in events]
    # January closes when the first February event arrives; February is still open at the last event.
    assert kinds == [
        ("sub_target", "asha", 1),
        ("achievement", "asha", 1),
        ("cycle_close", "asha", 1),
        ("cycle_close", "ravi", 1),
        ("sub_target", "ravi", 2),
        ("achievement", "ravi", 2),
    ]
    close = next(e for e in events if e["kind"] == "cycle_close" and e["customer_id"] == "ravi")
    assert (close["achieved_value"], close["defined_value"], close["gap"], close["achieved"]) == (
        "900",
        "5000",
        "4100",
        False,
    )
    assert close["is_target_achieved_event"] is False


def test_close_all_closes_every_remaining_cycle_for_every_enrolled_customer():
    events = printed(simulate("--close-all"))
    closes = [
        (e["customer_id"], e["cycle"]["index"], e["achieved_value"]) for e in events if e["kind"] == "cycle_close"
    ]
    # The milestone has 3 monthly cycles; asha has no February activity and still gets its close.
    assert closes == [
        ("asha", 1, "6500"),
        ("ravi", 1, "900"),
        ("asha", 2, "0"),
        ("ravi", 2, "5200"),
        ("asha", 3, "0"),
        ("ravi", 3, "0"),
    ]


def test_bad_lines_are_dead_letters_reported_and_skipped():
    result = simulate()
    assert b"rejected event 6: schema_violation" in result.stderr
    assert b"schema_violation=1" in result.stderr
    (letter,) = printed(result, "dead_letter")
    assert (letter["reason"], letter["source_topic"]) == ("schema_violation", "milestream.transactions")
    assert b"dead_letter=1" in result.stderr.splitlines()[-1]


def test_rejected_definition_is_reported():
    out, err = io.BytesIO(), io.StringIO()
    definition = orjson.loads((EXAMPLES / "monthly-spend.json").read_bytes())
    definition["name"] = " leading space"
    outcomes = run(orjson.dumps(definition).decode(), io.BytesIO(b""), out, err)
    assert outcomes["definitions:invalid_definition"] == 1
    assert "definition rejected" in err.getvalue()


def test_a_listed_customer_without_activity_gets_the_same_cycle_close_as_on_the_worker():
    """The definition's customer list produces enrolment events; the simulator feeds them back
    in as the broker does for the worker, so a listed customer with no activity is closed too."""
    from milestream.pipeline.driver import TopologyTestDriver
    from tests.engine.builders import close

    definition = orjson.loads((EXAMPLES / "monthly-spend.json").read_bytes())
    definition["enrolment"] = {"method": "specific", "customers": ["asha", "quiet"]}
    jan = {
        "type": "transaction",
        "event_id": "t1",
        "customer_id": "asha",
        "event_time": "2024-01-03T11:00:00+05:30",
        "bill_id": "b1",
        "gross_amount": "2000",
    }
    feb = {**jan, "event_id": "t2", "bill_id": "b2", "event_time": "2024-02-02T11:00:00+05:30"}
    out, err = io.BytesIO(), io.StringIO()
    run(orjson.dumps(definition).decode(), io.BytesIO(orjson.dumps(jan) + b"\n" + orjson.dumps(feb) + b"\n"), out, err)
    simulated = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(e["customer_id"] for e in simulated if e["kind"] == "cycle_close") == ["asha", "quiet"], (
        err.getvalue()
    )

    # The worker's path: the enrolments the definition produced come back from the broker.
    driver = TopologyTestDriver()
    loaded = driver.pipe("definitions", "monthly-5000", definition, timestamp=datetime.fromisoformat(jan["event_time"]))
    for record in loaded.records:
        driver.pipe("enrolments", record.key, record.value, timestamp=datetime.fromisoformat(jan["event_time"]))
    driver.pipe("transactions", "asha", jan, timestamp=datetime.fromisoformat(jan["event_time"]))
    close(driver, feb["event_time"])
    driver.pipe("transactions", "asha", feb, timestamp=datetime.fromisoformat(feb["event_time"]))
    assert simulated == driver.read("promotions")


def test_late_events_unmatched_returns_and_dead_letters_are_printed_and_counted():
    definition = orjson.loads((EXAMPLES / "monthly-spend.json").read_bytes())
    definition["settings"] = {"adjust_on_bill_return": True}
    jan = {
        "type": "transaction",
        "event_id": "t1",
        "customer_id": "asha",
        "event_time": "2024-01-03T11:00:00+05:30",
        "bill_id": "b1",
        "gross_amount": "2000",
    }
    late = {**jan, "event_id": "t2", "bill_id": "b2", "recorded_at": "2024-03-05T11:00:00+05:30"}
    unmatched = {
        "type": "return",
        "event_id": "r1",
        "return_id": "r1",
        "customer_id": "asha",
        "bill_id": "b-unknown",
        "scope": "bill",
        "event_time": "2024-03-05T12:00:00+05:30",
    }
    lines = b"".join(orjson.dumps(e) + b"\n" for e in (jan, late, unmatched)) + b'{"type": "transaction"}\n'
    out, err = io.BytesIO(), io.StringIO()
    outcomes = run(orjson.dumps(definition).decode(), io.BytesIO(lines), out, err)
    printed = [orjson.loads(line) for line in out.getvalue().splitlines()]
    types = [e["type"] for e in printed if e["type"] != "milestone_event"]
    assert types == ["late_event", "unmatched_return", "dead_letter"]
    assert (printed[-1]["reason"], outcomes["late_event"], outcomes["unmatched_return"]) == ("schema_violation", 1, 1)
    summary = err.getvalue().splitlines()[-1]
    for count in ("late_event=1", "unmatched_return=1", "dead_letter=1", "cycle_close=2"):
        assert count in summary, summary
