"""`milestream ...` as a user runs it: every mistake is one clear line on stderr and exit status 2.

Each command runs as a subprocess, so what is checked is what a user sees (no traceback, no log
noise from the Kafka client), including when the broker is down or does not answer.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEFINITIONS = str(EXAMPLES / "monthly-spend.json")  # milestone monthly-5000, target "spend", sub-target "Halfway"
EVENTS = str(EXAMPLES / "events.jsonl")


def milestream(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MILESTREAM_", "KAFKA_"))}
    environ["MILESTREAM_KAFKA_DIR"] = "/nonexistent"  # no local broker to discover unless a test says so
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "milestream.cli", *args], env=environ, capture_output=True, timeout=timeout
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, stderr)
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("milestream"), stderr
    assert result.stdout == b""
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once it is closed


@pytest.fixture
def csv_file(tmp_path):
    def write(content: str | bytes) -> str:
        path = tmp_path / "audience.csv"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    return write


# ------------------------------------------------------------------- simulate
@pytest.mark.parametrize(
    "content,expected",
    [
        (b'{"type": "milestone_definition", ', "line 1: neither a JSON document nor JSON lines"),
        (b"[" * 100_000 + b"]" * 100_000, "depth limit"),
        (b'{"type": "milestone_definition", "name": "caf\xe9"}', "not UTF-8 text (byte 45 is 0xe9)"),
    ],
)
def test_simulate_reports_an_unusable_definitions_file_in_one_line(tmp_path, content, expected):
    path = tmp_path / "definitions.json"
    path.write_bytes(content)
    line = one_line_error(milestream("simulate", "--definitions", str(path), "--events", EVENTS))
    assert f"--definitions {path}" in line and expected in line


def test_simulate_reports_missing_files(tmp_path):
    missing = str(tmp_path / "missing.json")
    assert "No such file" in one_line_error(milestream("simulate", "--definitions", missing, "--events", EVENTS))
    assert "--events" in one_line_error(milestream("simulate", "--definitions", DEFINITIONS, "--events", missing))


@pytest.mark.parametrize(
    "until,expected", [("notatime", "not an ISO 8601 time"), ("2024-02-01T00:00:00", "needs a time zone offset")]
)
def test_simulate_reports_a_bad_until(until, expected):
    line = one_line_error(milestream("simulate", "--definitions", DEFINITIONS, "--events", EVENTS, "--until", until))
    assert "--until" in line and expected in line


def test_simulate_survives_event_times_at_the_edge_of_the_calendar(tmp_path):
    """Such a time must not become the simulator's clock (it has no UTC form)."""
    events = tmp_path / "events.jsonl"
    base = {"type": "transaction", "customer_id": "c", "bill_id": "b", "gross_amount": "1"}
    events.write_bytes(
        b"".join(
            orjson.dumps({**base, "event_id": f"e{n}", "event_time": when}) + b"\n"
            for n, when in enumerate(["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+05:00"])
        )
    )
    result = milestream("simulate", "--definitions", DEFINITIONS, "--events", str(events))
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr


# ---------------------------------------------------------------------- enrol
def enrol(csv_path: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return milestream(
        "enrol",
        "--milestone",
        "monthly-5000",
        "--csv",
        csv_path,
        "--definitions",
        DEFINITIONS,
        "--dry-run",
        *extra,
        env=env,
    )


def test_enrol_reports_a_non_utf8_csv(csv_file):
    assert "not UTF-8 text" in one_line_error(enrol(csv_file(b"customer_id,spend\nren\xe9,100\n")))


def test_enrol_reports_a_cell_over_the_csv_limit(csv_file):
    line = one_line_error(enrol(csv_file("customer_id,spend\nann," + "9" * 200_000 + "\n")))
    assert "line 2" in line and "field larger than field limit" in line and len(line) < 600


def test_enrol_reports_a_bad_at(csv_file):
    assert "--at 'garbage': not an ISO 8601 time" in one_line_error(
        enrol(csv_file("customer_id,spend\nann,1\n"), "--at", "garbage")
    )


def test_enrol_rejects_an_unknown_milestone_or_target_column(csv_file):
    path = csv_file("customer_id,spend\nann,1\n")
    line = one_line_error(
        milestream("enrol", "--milestone", "m-nope", "--csv", path, "--definitions", DEFINITIONS, "--dry-run")
    )
    assert "no such milestone" in line and "m-nope" in line
    assert "has no target 'spnd' (its targets: spend)" in one_line_error(enrol(csv_file("customer_id,spnd\nann,1\n")))
    assert "has no sub-target 'Half'" in one_line_error(enrol(csv_file("customer_id,spend,spend:Half\nann,1,1\n")))


def test_enrol_options_reach_every_event_and_a_bad_cycle_stops_the_command(csv_file):
    path = csv_file("customer_id,spend,+spend\nann,5000,3000\n")
    result = enrol(path, "--cycle", "#2", "--reenrol", "reset", "--at", "2024-01-10T00:00:00+05:30")
    assert result.returncode == 0, result.stderr
    (event,) = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert (event["cycle"], event["reenrol"], event["initial_balance"]) == ("#2", "reset", {"spend": "3000"})
    line = one_line_error(enrol(path, "--cycle", "#99", "--at", "2024-01-10T00:00:00+05:30"))
    assert "--cycle '#99'" in line and "no such cycle" in line
    line = one_line_error(enrol(path, "--cycle", "#1", "--at", "2024-03-10T00:00:00+05:30"))
    assert "ended at" in line
    assert "has no target 'spnd'" in one_line_error(enrol(csv_file("customer_id,+spnd\nann,1\n")))
    assert "invalid choice" in one_line_error(enrol(path, "--reenrol", "restart"))


def test_enrol_sent_twice_yields_the_same_event_ids(csv_file):
    """The ids come from the milestone, customer and row, not from when the file is sent."""
    path = csv_file("customer_id,spend,spend@2,spend:Halfway\nann,5000,6000,2500\nbob,3000,,\n")
    first = enrol(path)
    time.sleep(1.1)  # the default enrolment time (now) differs between the runs
    second = enrol(path)
    assert first.returncode == second.returncode == 0, first.stderr
    ids = [[orjson.loads(line)["event_id"] for line in run.stdout.splitlines()] for run in (first, second)]
    assert ids[0] == ids[1] and len(set(ids[0])) == 2
    assert [orjson.loads(line)["event_time"] for line in first.stdout.splitlines()] != [
        orjson.loads(line)["event_time"] for line in second.stdout.splitlines()
    ]


def test_enrol_names_the_milestones_organisation(csv_file, tmp_path):
    """A brand's milestone enrols the brand's customers: the same customer id elsewhere is someone else."""
    brand = tmp_path / "brand.json"
    brand.write_bytes(orjson.dumps({**orjson.loads(Path(DEFINITIONS).read_bytes()), "org_id": "brand-b"}))
    run = milestream(
        "enrol",
        "--milestone",
        "monthly-5000",
        "--csv",
        csv_file("customer_id\nann\n"),
        "--definitions",
        str(brand),
        "--dry-run",
    )
    assert run.returncode == 0, run.stderr
    assert [orjson.loads(line)["org_id"] for line in run.stdout.splitlines()] == ["brand-b"]


# ------------------------------------------------------------------ broker down
@pytest.mark.parametrize("command", [["topics", "apply"], ["enrol", "--milestone", "monthly-5000", "--csv", "CSV"]])
def test_a_broker_that_is_down_is_one_line_within_seconds(command, csv_file):
    command = [csv_file("customer_id,spend\nann,1\n") if part == "CSV" else part for part in command]
    started = time.monotonic()
    line = one_line_error(milestream(*command, env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}"}))
    assert "cannot connect to the Kafka broker at 127.0.0.1:" in line
    assert time.monotonic() - started < 10


def test_a_broker_that_does_not_answer_is_given_up_after_the_command_timeout(csv_file):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{silent.getsockname()[1]}", "MILESTREAM_COMMAND_TIMEOUT": "1"}
        for command in (["topics", "apply"], ["enrol", "--milestone", "m", "--csv", csv_file("customer_id\nann\n")]):
            started = time.monotonic()
            line = one_line_error(milestream(*command, env=env))
            assert "no answer from the Kafka broker" in line and "within 1 s" in line
            assert time.monotonic() - started < 10


# ------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    "command",
    [
        ["settings"],
        ["schemas", "--out", "OUT"],
        ["worker"],
        ["topics", "apply"],
        ["simulate", "--definitions", DEFINITIONS, "--events", EVENTS],
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(command, tmp_path):
    command = [str(tmp_path) if part == "OUT" else part for part in command]
    line = one_line_error(milestream(*command, env={"MILESTREAM_WEB_PORT": "abc"}))
    assert "MILESTREAM_WEB_PORT" in line and "'abc'" in line


def test_a_bad_command_line_is_one_line():
    assert "required" in one_line_error(milestream("enrol"))


def test_settings_prints_the_values_in_effect():
    result = milestream("settings", env={"MILESTREAM_WEB_PORT": "7070", "MILESTREAM_OUTBOX_SIZE": "3"})
    assert result.returncode == 0
    values = dict(line.split("=", 1)[0:2] for line in result.stdout.decode().splitlines())
    assert values["MILESTREAM_WEB_PORT"].split()[0] == "7070"
    assert values["MILESTREAM_OUTBOX_SIZE"].split()[0] == "3"
    assert values["MILESTREAM_APP_ID"].split()[0] == "milestream"


def test_commands_find_the_local_broker_when_no_bootstrap_servers_are_set(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "bootstrap").write_text("127.0.0.1:39093\n")
    result = milestream("settings", env={"MILESTREAM_KAFKA_DIR": str(tmp_path)})
    assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39093 " in result.stdout.decode()
    explicit = milestream("settings", env={"MILESTREAM_KAFKA_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "h:1"})
    assert "KAFKA_BOOTSTRAP_SERVERS=h:1 " in explicit.stdout.decode()


# ------------------------------------------------------- enrol against a broker
@pytest.mark.kafka
def test_enrol_checks_the_milestone_on_the_definitions_topic_and_sends(kafka_bootstrap, tmp_path, csv_file):
    from tests.support.worker import consume, create_topics, isolated_settings, produce

    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    create_topics(settings)
    produce(settings, [("definitions", "monthly-5000", orjson.loads(Path(DEFINITIONS).read_bytes()))])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MILESTREAM_TOPIC_PREFIX": settings.topic_prefix}
    path = csv_file("customer_id,spend\nann,5000\n")
    result = milestream("enrol", "--milestone", "monthly-5000", "--csv", path, env=env)
    assert result.returncode == 0, result.stderr
    (sent,) = consume(settings, "enrolments", lambda seen: len(seen) >= 1, timeout=20)
    assert (sent["customer_id"], sent["milestone_id"], sent["targets"]) == (
        "ann",
        "monthly-5000",
        [{"target_id": "spend", "value": "5000", "sub_targets": {}}],
    )
    line = one_line_error(milestream("enrol", "--milestone", "m-other", "--csv", path, env=env))
    assert f"no such milestone in topic {settings.topic_prefix}definitions" in line
