"""`milestream enrol`: a CSV audience with per-customer and per-cycle targets becomes enrolment events."""

import subprocess
import sys
from datetime import datetime

import orjson

from milestream.enrolment_csv import enrolments_from_csv
from tests.engine.builders import calendar, close, closes, definition, load, send, target, txn

AT = datetime.fromisoformat("2024-01-01T00:00:00+05:30")
CSV = """customer_id,t1,t1@2,t1:Halfway
ann,5000,8000,2500
bob,3000,,
"""


def test_each_row_becomes_an_enrolment_with_the_customers_own_targets():
    events, errors = enrolments_from_csv(CSV, "m1", AT)
    assert errors == []
    ann, bob = events
    assert ann["targets"] == [
        {"target_id": "t1", "value": "5000", "sub_targets": {"Halfway": "2500"}},
        {"target_id": "t1", "value": "8000", "cycle": 2, "sub_targets": {}},
    ]
    assert bob["targets"] == [{"target_id": "t1", "value": "3000", "sub_targets": {}}]
    assert enrolments_from_csv(CSV, "m1", AT)[0] == events  # same file, same event ids
    later = enrolments_from_csv(CSV, "m1", datetime.fromisoformat("2024-03-01T00:00:00+05:30"))[0]
    assert [e["event_id"] for e in later] == [e["event_id"] for e in events]  # whenever it is sent


def test_bad_rows_are_reported_by_line_and_the_others_still_go():
    events, errors = enrolments_from_csv("customer_id,t1,t1@x\nann,5000,\n,100,\ncid,-1,\n", "m1", AT)
    assert [e["customer_id"] for e in events] == ["ann"]
    assert errors[0].startswith("line 3: ") and "customer_id" in errors[0]
    assert errors[1].startswith("line 4: ")
    assert enrolments_from_csv("id,t1\n", "m1", AT) == ([], ["line 1: the header must have a customer_id column"])


def test_csv_targets_drive_the_engine_per_customer_and_per_cycle(driver):
    load(
        driver,
        definition(
            cycles=calendar("monthly", "2024-01-01", 3),
            target_values="per_customer",
            enrolment={"method": "specific", "customers": ["ann", "bob"]},
            targets=[target(value=None, sub_targets=[{"name": "Halfway", "criterion": "absolute", "value": "1"}])],
        ),
    )
    events, _ = enrolments_from_csv(CSV, "m1", AT)
    send(driver, *events)
    send(driver, txn("ann", "2024-02-05T10:00:00+05:30", "6000"), txn("bob", "2024-01-05T10:00:00+05:30", "3000"))
    close(driver, "2024-03-01T00:00:00+05:30")
    assert sorted(closes(driver)) == [("ann", 1, "0"), ("ann", 2, "6000"), ("bob", 1, "3000"), ("bob", 2, "0")]
    by_customer = {(e["customer_id"], e["cycle"]["index"], e["kind"]): e for e in driver.read("promotions")}
    assert by_customer[("ann", 2, "cycle_close")]["defined_value"] == "8000"  # the per-cycle value
    assert by_customer[("ann", 2, "sub_target")]["milestone_value_defined"] == "2500"
    assert by_customer[("bob", 1, "achievement")]["defined_value"] == "3000"


def test_the_command_prints_events_and_exits_1_on_a_bad_row(tmp_path):
    path = tmp_path / "audience.csv"
    path.write_text("customer_id,t1\nann,5000\nbob,-2\n")
    definitions = tmp_path / "definitions.json"
    definitions.write_bytes(
        orjson.dumps(
            definition(
                target_values="per_customer",
                targets=[target(value=None)],
                enrolment={"method": "specific", "customers": []},
            )
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "milestream.cli",
            "enrol",
            "--milestone",
            "m1",
            "--csv",
            str(path),
            "--definitions",
            str(definitions),
            "--at",
            "2024-01-01T00:00:00+05:30",
            "--dry-run",
        ],
        capture_output=True,
    )
    assert result.returncode == 1
    assert [orjson.loads(line)["customer_id"] for line in result.stdout.splitlines()] == ["ann"]
    assert b"rejected line 3:" in result.stderr


def test_initial_balance_columns_and_the_enrolment_options():
    text = "customer_id,t1,+t1\nann,5000,3000\nbob,5000,\n"
    (ann, bob), errors = enrolments_from_csv(text, "m1", AT, cycle="Summer", reenrol="reset")
    assert errors == []
    assert ann["initial_balance"] == {"t1": "3000"} and bob["initial_balance"] == {}
    assert ann["targets"] == [{"target_id": "t1", "value": "5000", "sub_targets": {}}]
    assert (ann["cycle"], ann["reenrol"]) == ("Summer", "reset")
    plain = enrolments_from_csv(text, "m1", AT)[0]
    assert "cycle" not in plain[0] and plain[0]["reenrol"] == "resume"
    assert plain[0]["event_id"] != ann["event_id"]  # other options, another enrolment
    _, errors = enrolments_from_csv("customer_id,+t1@2\nann,100\n", "m1", AT)
    assert errors and "initial balance is per target" in errors[0]


def test_csv_balances_and_cycle_drive_the_engine(driver):
    from milestream.enrolment_csv import check_columns, check_cycle
    from milestream.errors import UsageError
    from tests.engine.builders import kinds

    load(
        driver,
        definition(
            cycles=calendar("monthly", "2024-01-01", 3), enrolment={"method": "none"}, targets=[target(value="5000")]
        ),
    )
    milestone = driver.topology.registry.milestones["m1"]
    check_columns(milestone, ["customer_id", "+t1"])
    for bad in ("#4", "March"):
        try:
            check_cycle(milestone, bad, AT)
            raise AssertionError(f"{bad} accepted")
        except UsageError as exc:
            assert "has no such cycle" in str(exc)
    events, _ = enrolments_from_csv("customer_id,+t1\nann,3000\n", "m1", AT, milestone, cycle="#2")
    send(driver, *events)
    send(driver, txn("ann", "2024-01-20T10:00:00+05:30", "2000"))  # January: enrolled from February
    assert kinds(driver) == []
    send(driver, txn("ann", "2024-02-20T10:00:00+05:30", "2000"))
    assert kinds(driver) == [("achievement", "t1", 2)]
