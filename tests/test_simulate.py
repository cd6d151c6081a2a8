"""`milestream simulate`: the engine over a file, event time as the clock."""

import io
import subprocess
import sys
from pathlib import Path

import orjson

from milestream.simulate import run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def simulate(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "milestream.cli", "simulate", "--definitions", str(EXAMPLES / "monthly-spend.json"),
         "--events", str(EXAMPLES / "events.jsonl"), *extra],
        capture_output=True, check=True,
    )


def test_two_runs_are_byte_identical():
    first, second = simulate("--close-all"), simulate("--close-all")
    assert first.stdout == second.stdout and first.stdout


def test_cycles_close_as_event_time_passes_them():
    events = [orjson.loads(line) for line in simulate().stdout.splitlines()]
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
    assert (close["achieved_value"], close["defined_value"], close["gap"], close["achieved"]) == ("900", "5000", "4100", False)
    assert close["is_target_achieved_event"] is False


def test_close_all_closes_every_remaining_cycle_for_every_enrolled_customer():
    events = [orjson.loads(line) for line in simulate("--close-all").stdout.splitlines()]
    closes = [(e["customer_id"], e["cycle"]["index"], e["achieved_value"]) for e in events if e["kind"] == "cycle_close"]
    # The milestone has 3 monthly cycles; asha has no February activity and still gets its close.
    assert closes == [("asha", 1, "6500"), ("ravi", 1, "900"), ("asha", 2, "0"), ("ravi", 2, "5200"),
                      ("asha", 3, "0"), ("ravi", 3, "0")]


def test_bad_lines_are_reported_and_skipped():
    result = simulate()
    assert b"rejected event 6: schema_violation" in result.stderr
    assert b"schema_violation=1" in result.stderr


def test_rejected_definition_is_reported():
    out, err = io.BytesIO(), io.StringIO()
    definition = orjson.loads((EXAMPLES / "monthly-spend.json").read_bytes())
    definition["name"] = " leading space"
    outcomes = run(orjson.dumps(definition).decode(), io.BytesIO(b""), out, err)
    assert outcomes["definitions:invalid_definition"] == 1
    assert "definition rejected" in err.getvalue()
