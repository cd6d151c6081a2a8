"""The lifetime-points ranking: bounded top-k, and a snapshot scanned in slices that let the loop run."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from milestream.pipeline.series import SeriesStage, TopLifetimePoints
from milestream.settings import Settings
from milestream.state.keys import Namespace
from milestream.state.memory import MemoryStore
from milestream.topics import load_topics
from milestream.worker.ranking import LifetimeRanking

points = st.dictionaries(st.text(min_size=1, max_size=4), st.integers(-5, 5).map(Decimal), max_size=40)


@given(points, st.integers(1, 12))
def test_top_k_equals_a_full_sort(customers, size):
    ranking = TopLifetimePoints(size)
    for customer_id, value in customers.items():
        ranking.add(customer_id, value)
    for descending in (True, False):
        expected = sorted(customers.items(), key=lambda kv: ((-kv[1] if descending else kv[1]), kv[0]))[:size]
        assert [(r["customer_id"], Decimal(r["points"])) for r in ranking.rows(size, descending)] == expected


def stage_and_store(customers: int) -> tuple[SeriesStage, MemoryStore]:
    store = MemoryStore()
    for n in range(customers):
        store.put(Namespace.CUSTOMER.key(f"c{n:05d}"), {"lp": str(n % 97)})
    store.put(Namespace.OUTBOX.key("c00000"), {"lp": "1000"})  # internal documents never rank
    return SeriesStage(load_topics(Settings()), outbox_size=8), store


def test_the_scan_yields_to_the_loop_between_slices():
    stage, store = stage_and_store(2_000)
    ranking = LifetimeRanking(stage, store, size=3, slice_size=100)
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main():
        ticker = asyncio.ensure_future(other_work())
        await asyncio.sleep(0)
        rows, as_of = await ranking.rows(3, descending=True)
        ticker.cancel()
        return rows, as_of

    rows, as_of = asyncio.run(main())
    assert [r["points"] for r in rows] == ["96", "96", "96"] and as_of
    assert ticks >= 2_000 // 100  # the other task ran between slices


def test_a_fresh_snapshot_is_served_without_a_scan_and_a_stale_one_while_a_scan_runs():
    stage, store = stage_and_store(10)
    ranking = LifetimeRanking(stage, store, size=5, max_age=3600)

    async def main():
        first = await ranking.rows(1, descending=True)
        store.put(Namespace.CUSTOMER.key("zz"), {"lp": "500"})
        assert await ranking.rows(1, descending=True) == first  # fresh: no scan
        ranking.max_age = 0
        stale = await ranking.rows(1, descending=True)  # served at once; a scan starts
        await ranking._scan
        return first, stale, await ranking.rows(1, descending=True)

    first, stale, after = asyncio.run(main())
    assert stale == first
    assert after[0] == [{"customer_id": "zz", "org_id": "default", "points": "500"}]


def test_a_scan_broken_by_a_rebalance_keeps_the_previous_snapshot():
    stage, store = stage_and_store(10)
    ranking = LifetimeRanking(stage, store, size=5, max_age=0, slice_size=2)

    class Rebalancing(MemoryStore):
        def keys(self, namespace):
            yield from list(store.keys(namespace))[:3]
            raise RuntimeError("dictionary changed size during iteration")

    async def main():
        first = await ranking.rows(2, descending=True)
        ranking.store = Rebalancing()
        await ranking.rows(2, descending=True)
        await ranking._scan
        return first, await ranking.rows(2, descending=True)

    first, after = asyncio.run(main())
    assert after == first
