"""`milestream simulate` runs milestone series too: definitions keyed by series, series events out."""

import io

import orjson

from milestream.simulate import run
from tests.engine.series_builders import ledger, membership, series


def test_a_series_simulates_like_the_worker():
    events = [
        membership("ana", "ambassadors", "2025-01-02T09:00:00+00:00"),
        ledger("ana", "260", "2025-01-02T10:00:00+00:00", source="campaign"),
    ]
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
    out, err = io.BytesIO(), io.StringIO()
    outcomes = run(orjson.dumps(series()).decode(), io.BytesIO(lines), out, err)
    assert outcomes["definitions:applied"] == 1, err.getvalue()
    printed = [orjson.loads(line) for line in out.getvalue().splitlines()]
    series_events = [e for e in printed if e["type"] == "series_event"]
    assert [(e["kind"], e["tier"]["tier_id"]) for e in series_events] == [
        ("tier_unlocked", "bronze"),
        ("tier_unlocked", "silver"),
    ]
    # The lifetime points the worker writes to its compacted topic are printed too, and counted.
    (lifetime,) = [e for e in printed if e["type"] == "lifetime_points"]
    assert (lifetime["customer_id"], lifetime["points"]) == ("ana", "260")
    assert outcomes["lifetime_points"] == 1 and "lifetime_points=1" in err.getvalue().splitlines()[-1]
