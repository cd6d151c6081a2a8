"""Through the real broker: a rejected definitions record never stays the last record under its key.

The definitions topic is compacted, so a worker started later reads only the last record per
key. After a rejected edit the publishing worker republishes the key's current definition (or a
tombstone when the key has none); a new worker reading what compaction keeps loads the valid one.
"""

import time
from datetime import datetime, timezone

import orjson
import pytest

from tests.factories import live_window, monthly_gross_definition
from tests.support.worker import (
    WorkerProcess,
    consume,
    create_topics,
    isolated_settings,
    produce,
    read_to_end,
    topic,
)

pytestmark = pytest.mark.kafka

NOW = datetime.now(timezone.utc)
LIVE = live_window(NOW, days_before=10, days_after=80)


def last_per_key(records: list[tuple[bytes | None, bytes | None]]) -> dict[bytes | None, bytes | None]:
    last: dict[bytes | None, bytes | None] = {}
    for key, value in records:
        last.pop(key, None)
        last[key] = value  # re-inserted: the dict keeps log order of each key's last record
    return last


def test_a_new_worker_reading_the_compacted_topic_loads_the_valid_definition(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path / "first")
    create_topics(settings)
    first = WorkerProcess(settings, tmp_path / "first.log")
    fresh = None
    try:
        first.start()
        valid = monthly_gross_definition("m-keep", **LIVE)
        produce(settings, [("definitions", "m-keep", valid)])
        first.wait_for_definition("m-keep")
        produce(
            settings,
            [
                ("definitions", "m-keep", {**valid, "name": "Renamed"}),  # the name is immutable
                ("definitions", "m-ghost", {"type": "milestone_status", "milestone_id": "m-ghost", "active": False}),
            ],
        )
        letters = consume(settings, "dead-letters", lambda seen: len(seen) >= 2)
        assert sorted(letter["reason"] for letter in letters) == ["invalid_definition", "invalid_definition"]

        definitions = topic(settings, "definitions")
        deadline = time.monotonic() + 20  # the republished records follow the dead letters closely
        while True:
            last = last_per_key(read_to_end(settings, definitions))
            if last.get(b"m-ghost", b"") is None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert orjson.loads(last[b"m-keep"]) == valid
        assert last[b"m-ghost"] is None  # a tombstone: compaction removes the rejected command

        # What compaction keeps (the last record per key, tombstones gone), read by a new worker.
        compacted = isolated_settings(kafka_bootstrap, tmp_path / "fresh")
        create_topics(compacted)
        produce(compacted, [("definitions", key, value) for key, value in last.items() if value is not None])
        fresh = WorkerProcess(compacted, tmp_path / "fresh.log")
        fresh.start()
        fresh.wait_for_definition("m-keep")
        loaded = fresh.http("/definitions", expect_json=True)
        assert loaded == {"m-keep": {"name": valid["name"], "status": "live/active"}}
    finally:
        first.stop()
        if fresh is not None:
            fresh.stop()
