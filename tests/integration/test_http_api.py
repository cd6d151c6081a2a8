"""The HTTP API on real workers: two `milestream worker` processes sharing the partitions."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from milestream.api import read_models
from milestream.api.access import key_partition
from milestream.pipeline.driver import TopologyTestDriver
from milestream.state.keys import Customer, in_changelog
from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.worker import WorkerProcess, free_port, produce, read_to_end, two_workers, wait_until_balanced

pytestmark = pytest.mark.kafka

TOKEN = "integration-api-token"
NOW = datetime.now(timezone.utc)


def get(worker: WorkerProcess, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.settings.web_port}{path}",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def workers(kafka_bootstrap, tmp_path_factory):
    processes = two_workers(kafka_bootstrap, tmp_path_factory.mktemp("api"), api_token=TOKEN)
    for process in processes:
        process.start()
    yield processes
    for process in processes:
        process.stop()


def test_progress_and_leaderboards_answer_from_any_worker(workers):
    one, two = workers
    settings = one.settings
    definition = monthly_gross_definition("m-api", **live_window(NOW), settings={"leaderboard": True})
    customers = [f"api-{n}" for n in range(8)]
    events = [
        transaction(c, str(100 * (n + 1) + k), (NOW - timedelta(minutes=30 - k)).isoformat(), k)
        for n, c in enumerate(customers)
        for k in range(2)
    ]
    produce(settings, [("definitions", "m-api", definition)])
    for worker in workers:
        worker.wait_for_definition("m-api")
    produce(settings, [("transactions", e["customer_id"], e) for e in events])

    # What the in-process pipeline (the simulator's) computes for the same input.
    driver = TopologyTestDriver()
    driver.pipe("definitions", "m-api", definition)
    for e in events:
        driver.pipe("transactions", e["customer_id"], e)
    compiled = driver.topology.registry.milestones["m-api"]
    expected = {}
    for c in customers:
        ms = driver.store.get(Customer("default", c).state_key)["m"]["m-api"]
        shown = read_models.milestone_progress(driver.topology.engine, compiled, ms, c, NOW)
        expected[c] = shown.model_dump(mode="json")["open_cycles"]

    deadline = time.monotonic() + 90
    while True:
        answers = {c: get(one, f"/customers/{c}/milestones/m-api") for c in customers}
        done = all(s == 200 and a["open_cycles"] == expected[c] for c, (s, a) in answers.items())
        if done or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert done, {c: a for c, a in answers.items()}
    # Each worker owns half the partitions, so each of them forwards some of these requests.
    assert wait_until_balanced(workers, 8) == [4, 4]
    partition_of = {c: key_partition(c.encode(), 8) for c in customers}
    assert len(set(partition_of.values())) > 4  # customers on both workers' partitions
    for c in customers:  # the other worker forwards to the owner, or answers itself: the same progress
        assert get(two, f"/customers/{c}/milestones/m-api") == answers[c]
    status, body = get(one, "/customers/api-0/milestones/m-api", token=None)
    assert status == 401 and "bearer" in body["error"]

    ranked = sorted(customers, key=lambda c: (-sum(100 * (customers.index(c) + 1) + k for k in range(2)), c))
    for worker in workers:
        status, board = get(worker, "/leaderboards/m-api?top=5")
        assert status == 200, board
        assert [e["customer_id"] for e in board["entries"]] == ranked[:5]
        status, standing = get(worker, "/leaderboards/customers/api-3")
        assert status == 200 and standing["standings"][0]["rank"] == ranked.index("api-3") + 1
    status, history = get(two, "/customers/api-1/milestones/m-api/history")
    assert status == 200 and [c["deltas"] for c in history["cycles"][0]["contributions"]] == [
        {"spend": "200"},
        {"spend": "201"},
    ]


def test_a_fresh_worker_derives_the_leaderboard_from_the_restored_state(workers, tmp_path):
    """The leaderboard entries are never sent to the changelog: a worker with an empty data folder
    restores the customers' state and, from it, the very boards the first workers served."""
    one, _ = workers
    settings = one.settings
    boards = {worker.settings.worker_id: get(worker, "/leaderboards/m-api?top=8") for worker in workers}
    standing = get(one, "/leaderboards/customers/api-3")
    assert all(status == 200 and len(board["entries"]) == 8 for status, board in boards.values()), boards
    changelog = read_to_end(settings, f"{settings.app_id}-customer-state-changelog")
    assert changelog and not [key for key, _ in changelog if key and not in_changelog(key)]
    for worker in workers:
        worker.stop()
    fresh = WorkerProcess(
        settings.model_copy(
            update={"web_port": free_port(), "data_dir": str(tmp_path / "fresh"), "worker_id": "worker-3"}
        ),
        tmp_path / "fresh.log",
    )
    try:
        fresh.start()
        assert wait_until_balanced([fresh], 8) == [8]
        assert get(fresh, "/leaderboards/m-api?top=8") == boards["worker-1"]
        assert get(fresh, "/leaderboards/customers/api-3") == standing
    finally:
        fresh.stop()
