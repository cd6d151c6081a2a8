"""The broker goes away under a running worker (SIGKILL, as a crashed or rebooted broker) and comes
back on the same port and data: the worker carries on, nothing is lost, nothing counted twice.

The worker keeps its place (static membership, manual acks): what it had not committed is read
again after the broker returns and recognised (docs/guarantees.md); a send that waited for the
broker longer than MILESTREAM_DELIVERY_TIMEOUT restarts the worker in place, from its last commit.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timezone

import pytest

from tests.factories import transaction
from tests.integration.test_crash_recovery import FIRES_AT, sub_target_definition
from tests.support.worker import (
    WorkerProcess,
    consume,
    create_topics,
    isolated_settings,
    produce,
    wait_for_commits,
)

pytestmark = pytest.mark.kafka

CUSTOMERS = 80
PURCHASES = 10  # fires every trigger of FIRES_AT


def test_a_broker_killed_and_restarted_under_load_loses_and_doubles_nothing(tmp_path):
    from deploy import local_kafka

    local_kafka.fetch()
    broker = local_kafka.start(tmp_path / "kafka", fresh=True)
    now = datetime.now(timezone.utc)
    settings = isolated_settings(broker.bootstrap, tmp_path / "data", delivery_timeout_s=30.0)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        create_topics(settings)
        produce(settings, [("definitions", "m-broker", sub_target_definition("m-broker", now))])
        worker.start()
        worker.wait_for_definition("m-broker")

        def purchases(nth: int) -> list:
            return [
                ("transactions", f"c{c}", transaction(f"c{c}", "100", now.isoformat(), nth)) for c in range(CUSTOMERS)
            ]

        for nth in range(1, PURCHASES // 2 + 1):
            produce(settings, purchases(nth))
        os.killpg(broker.pgid or broker.pid, signal.SIGKILL)  # mid-processing: no clean shutdown
        time.sleep(5)
        broker = local_kafka.start(tmp_path / "kafka", port=broker.port)
        for nth in range(PURCHASES // 2 + 1, PURCHASES + 1):
            produce(settings, purchases(nth))

        expected = {(f"c{c}", trigger) for c in range(CUSTOMERS) for trigger in FIRES_AT}
        events = consume(
            settings, "promotions", lambda seen: len({e["event_id"] for e in seen}) >= len(expected), timeout=180
        )
        fired = {}
        for event in events:
            trigger = "achievement" if event["kind"] == "achievement" else f"sub_target:{event['trigger_names'][0]}"
            fired.setdefault((event["customer_id"], trigger), set()).add(event["event_id"])
        assert set(fired) == expected, worker.log_tail()
        assert all(len(ids) == 1 for ids in fired.values()), "an output under a second id"
        wait_for_commits(settings, "transactions", timeout=60)
        assert worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
        broker.stop()
