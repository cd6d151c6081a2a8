"""Blue/green reprocessing through the real broker, with real workers and the `milestream replay` commands.

Blue processes the input; green (a new app id and output prefix) replays it from the earliest offset,
catches up and produces the same promotions on its own topics, writing nothing on the shared ones;
green is switched in as the live deployment and goes on where blue stopped. Then a second replay,
after a definition changed, is reported as different.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from milestream.settings import Settings
from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.worker import (
    WorkerProcess,
    consume,
    create_topics,
    end_offsets,
    free_port,
    isolated_settings,
    produce,
    read_to_end,
    settings_env,
    topic,
)

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
WINDOW = live_window(NOW)  # its first cycle has ended: a listed customer gets a close


def when(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def replay(live: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "milestream.cli", "replay", *args],
        env=settings_env(live),
        capture_output=True,
        text=True,
        timeout=90,
    )


def start_green(live: Settings, app_id: str, prefix: str, folder: Path) -> WorkerProcess:
    """`replay start`, then a worker in the environment it printed."""
    started = replay(live, "start", "--app-id", app_id, "--output-prefix", prefix, "--data-dir", str(folder / app_id))
    assert started.returncode == 0, started.stderr
    printed = dict(line.split("=", 1) for line in started.stdout.splitlines() if line and not line.startswith("#"))
    assert printed["MILESTREAM_APP_ID"] == app_id and printed["MILESTREAM_OUTPUT_TOPIC_PREFIX"] == prefix
    env = {**live.environment(), **printed, "MILESTREAM_WEB_PORT": str(free_port())}
    green = WorkerProcess(Settings.from_env(env), folder / f"{app_id}.log")
    green.start()
    return green


def caught_up(live: Settings, app_id: str) -> str:
    deadline = time.monotonic() + 90
    while True:
        status = replay(live, "status", "--app-id", app_id, "--wait", "60")
        if status.returncode == 0:
            return status.stdout
        # Until green's first commit its group does not exist yet.
        assert status.returncode == 2 and "no consumer group" in status.stderr, status.stdout + status.stderr
        assert time.monotonic() < deadline, status.stderr
        time.sleep(1)


def events(settings: Settings, logical: str) -> list[dict]:
    import orjson

    return [orjson.loads(value) for _, value in read_to_end(settings, topic(settings, logical)) if value]


def test_replay_compare_switch_and_a_changed_definition(kafka_bootstrap, tmp_path):
    blue_settings = isolated_settings(
        kafka_bootstrap, tmp_path / "blue", close_tick_interval_s=1.0, session_timeout_s=6.0
    )
    create_topics(blue_settings)
    green_1, green_2 = f"{blue_settings.app_id}-g1", f"{blue_settings.app_id}-g2"
    blue = WorkerProcess(blue_settings, tmp_path / "blue.log")
    blue.start()
    produce(
        blue_settings,
        [
            ("definitions", "m-replay", monthly_gross_definition("m-replay", **WINDOW)),
            # Listed customers are enrolled by blue, on the shared enrolments topic.
            (
                "definitions",
                "m-listed",
                monthly_gross_definition("m-listed", **WINDOW, enrolment={"method": "specific", "customers": ["lena"]}),
            ),
        ],
    )
    blue.wait_for_definition("m-listed")
    produce(
        blue_settings,
        [
            ("transactions", "alice", transaction("alice", "2000", when(30), 1)),
            ("transactions", "bob", transaction("bob", "100", when(30), 1)),
            ("transactions", "alice", transaction("alice", "1500", when(20), 2)),
            ("transactions", "carol", transaction("carol", "5500", when(20), 1)),
            ("transactions", "alice", transaction("alice", "3000.50", when(10), 3)),
        ],
    )
    # lena's closes of the first cycle, of the milestone listing her and of the one open to all
    expected = {("alice", "achievement"), ("carol", "achievement"), ("lena", "cycle_close")}
    consume(blue_settings, "promotions", lambda seen: len(seen) >= 4)
    assert {(e["customer_id"], e["kind"]) for e in events(blue_settings, "promotions")} == expected
    enrolments = end_offsets(blue_settings, "enrolments")
    assert sum(enrolments.values()) == 1  # lena's

    # Green replays everything into its own topics and finds what blue found.
    green = start_green(blue_settings, green_1, f"{blue_settings.topic_prefix}g1.", tmp_path)
    assert "caught up" in caught_up(blue_settings, green_1)
    compared = replay(blue_settings, "compare", "--output-prefix", f"{blue_settings.topic_prefix}g1.")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "equal: 4 events" in compared.stdout
    assert end_offsets(blue_settings, "enrolments") == enrolments  # green wrote nothing on the shared topics
    refused = replay(
        blue_settings, "switch", "--app-id", green_1, "--output-prefix", f"{blue_settings.topic_prefix}g1."
    )
    assert refused.returncode == 2 and "still has members" in refused.stderr and "Traceback" not in refused.stderr

    # The switch: green stopped, then blue; green goes on as the live deployment on blue's topics.
    green.stop()
    blue.stop()
    deadline = time.monotonic() + 60
    while True:
        switched = replay(
            blue_settings, "switch", "--app-id", green_1, "--output-prefix", f"{blue_settings.topic_prefix}g1."
        )
        if switched.returncode == 0 or time.monotonic() > deadline:
            break
        assert "still has members" in switched.stderr, switched.stderr
        time.sleep(1)
    assert switched.returncode == 0, switched.stderr
    live_settings = green.settings.model_copy(update={"output_topic_prefix": "", "web_port": free_port()})
    assert f"MILESTREAM_APP_ID={green_1}\n" in switched.stdout
    live = WorkerProcess(live_settings, tmp_path / "green-1-live.log")
    live.start()
    produce(live_settings, [("transactions", "dave", transaction("dave", "7000", when(5), 1))])
    seen = consume(live_settings, "promotions", lambda seen: any(e["customer_id"] == "dave" for e in seen))
    assert {(e["customer_id"], e["kind"]) for e in seen} == {*expected, ("dave", "achievement")}
    assert len({e["event_id"] for e in seen}) == len(seen) == 5  # green went on where blue stopped
    assert not events(green.settings, "promotions")[4:]  # and writes no more on its replay topics

    # A second replay after a definition changed (5,000 -> 6,000) does not find what the live one did.
    produce(live_settings, [("definitions", "m-replay", monthly_gross_definition("m-replay", "6000", **WINDOW))])
    second = start_green(live_settings, green_2, f"{blue_settings.topic_prefix}g2.", tmp_path)
    try:
        caught_up(live_settings, green_2)
        compared = replay(live_settings, "compare", "--output-prefix", f"{blue_settings.topic_prefix}g2.")
    finally:
        second.stop()
        live.stop()
    assert compared.returncode == 1, compared.stdout + compared.stderr
    # carol's 5,500 no longer reaches it; alice's and dave's awards, and lena's close, name 6,000
    assert (
        compared.stderr.strip()
        == "milestream: green differs from blue: 1 missing in green, 0 extra in green, 3 different"
    )
    assert "defined_value '5000' -> '6000'" in compared.stdout
