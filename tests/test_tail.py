"""`milestream tail` as a user runs it, against the real broker: filters, bounds, Ctrl-C, errors in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import orjson
import pytest

from milestream.tail import TailOptions, matches
from tests.test_cli import closed_port, milestream, one_line_error


def milestone_event(customer: str, kind: str, n: int) -> dict:
    return {
        "type": "milestone_event",
        "event_id": f"{customer}-{kind}-{n}",
        "kind": kind,
        "customer_id": customer,
        "milestone_id": "m1",
        "achieved_value": str(1000 * n),
    }


def test_filters_match_the_key_or_customer_and_the_kind_type_or_reason():
    event = milestone_event("ann", "achievement", 1)
    assert matches(TailOptions("promotions", customer="ann", kind="achievement"), b"ann", event)
    assert not matches(TailOptions("promotions", customer="bob"), b"ann", event)
    assert not matches(TailOptions("promotions", kind="cycle_close"), b"ann", event)
    assert matches(TailOptions("dead-letters", kind="wrong_key"), None, {"type": "dead_letter", "reason": "wrong_key"})
    assert matches(TailOptions("lifetime-points", customer="ann"), b"ann", "not json")
    assert not matches(TailOptions("promotions", kind="achievement"), b"ann", None)


def test_a_broker_that_is_down_is_one_line():
    line = one_line_error(
        milestream("tail", "--timeout", "5", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}"})
    )
    assert line.startswith("milestream: tail promotions: cannot connect to the Kafka broker")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope"], "no topic 'nope' in topics.yaml"),
        (["--max", "0"], "--max 0: must be at least 1"),
        (["--timeout", "-1"], "--timeout -1: must be more than 0 seconds"),
        (["--max", "many"], "invalid int value"),
    ],
)
def test_bad_arguments_are_one_line(args, expected):
    assert expected in one_line_error(milestream("tail", *args, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}))


# ------------------------------------------------------------------ with a broker
@pytest.fixture
def topics(kafka_bootstrap, tmp_path):
    from tests.support.worker import create_topics, isolated_settings, settings_env

    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    create_topics(settings)
    return settings, settings_env(settings)


@pytest.mark.kafka
def test_from_the_beginning_filtered_and_bounded(topics):
    from tests.support.worker import produce

    settings, env = topics
    produce(
        settings,
        [
            ("promotions", e["customer_id"], e)
            for e in [
                milestone_event("ann", "sub_target", 1),
                milestone_event("bob", "achievement", 2),
                milestone_event("ann", "achievement", 3),
                milestone_event("ann", "cycle_close", 4),
                milestone_event("ann", "achievement", 5),
            ]
        ],
    )
    result = milestream(
        "tail",
        "--from-beginning",
        "--customer",
        "ann",
        "--kind",
        "achievement",
        "--max",
        "2",
        "--timeout",
        "30",
        "--json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert [orjson.loads(line)["event_id"] for line in result.stdout.splitlines()] == [
        "ann-achievement-3",
        "ann-achievement-5",
    ]
    pretty = milestream("tail", "--from-beginning", "--customer", "ann", "--max", "1", "--timeout", "30", env=env)
    lines = pretty.stdout.decode().splitlines()
    assert lines[0].startswith(f"# {settings.topic_prefix}promotions[") and lines[0].endswith("]@0 key=ann")
    assert orjson.loads("\n".join(lines[1:]))["event_id"] == "ann-sub_target-1"
    assert len(lines) > 3  # indented, one field a line


@pytest.mark.kafka
def test_max_not_reached_within_the_timeout_exits_1(topics):
    settings, env = topics
    started = time.monotonic()
    result = milestream("tail", "--max", "1", "--timeout", "2", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (1, b"", b"")
    assert time.monotonic() - started < 20
    assert milestream("tail", "--timeout", "1", env=env).returncode == 0


@pytest.mark.kafka
def test_without_from_beginning_only_new_records_are_shown(topics):
    from tests.support.worker import produce

    settings, env = topics
    produce(settings, [("promotions", "ann", milestone_event("ann", "achievement", 0))])
    process = subprocess.Popen(
        [sys.executable, "-m", "milestream.cli", "tail", "--max", "1", "--timeout", "60", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    n = 0
    while process.poll() is None and n < 50:  # keep sending until the tail, once positioned, sees one
        n += 1
        produce(settings, [("promotions", "ann", milestone_event("ann", "achievement", n))])
        time.sleep(0.5)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert orjson.loads(out)["event_id"] != "ann-achievement-0"


@pytest.mark.kafka
@pytest.mark.parametrize("at_start", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored-by-the-parent"])
def test_ctrl_c_ends_it_cleanly(topics, at_start):
    from tests.support.worker import produce

    settings, env = topics
    produce(settings, [("promotions", "ann", milestone_event("ann", "achievement", 1))])
    process = subprocess.Popen(
        [sys.executable, "-m", "milestream.cli", "tail", "--from-beginning", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, at_start),  # noqa: PLW1509 - the child's, before exec
    )
    try:
        first = process.stdout.readline()  # it is reading the topic
        assert orjson.loads(first)["event_id"] == "ann-achievement-1"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert err == b"", err.decode()
