"""`milestream simulate` runs milestone series too: definitions keyed by series, series events out."""

import io

import orjson

from milestream.simulate import run
from tests.engine.series_builders import ledger, membership, series


def test_a_series_simulates_like_the_worker():
    events = [membership("ana", "ambassadors", "2025-01-02T09:00:00+00:00"),
              ledger("ana", "260", "2025-01-02T10:00:00+00:00", source="campaign")]
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
    out, err = io.BytesIO(), io.StringIO()
    outcomes = run(orjson.dumps(series()).decode(), io.BytesIO(lines), out, err)
    assert outcomes["definitions:applied"] == 1, err.getvalue()
    printed = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["kind"], e["tier"]["tier_id"]) for e in printed] == [("tier_unlocked", "bronze"), ("tier_unlocked", "silver")]
