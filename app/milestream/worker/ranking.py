"""The lifetime-points ranking of a worker, without blocking its event loop.

Ranking needs every customer of the worker's partitions, and a worker can hold
millions. Scanning the store inside a request would stop processing for as
long, so the ranking is a snapshot:

* a scan visits the store in slices of ``slice_size`` keys and yields to the
  event loop between slices, keeping only the ``size`` highest and lowest
  customers (``TopLifetimePoints``): bounded work per slice, bounded memory;
* a request is answered from the latest snapshot (O(top) work) and starts a new
  scan in the background when that snapshot is older than ``max_age`` seconds;
  only the very first request waits for a scan;
* a scan interrupted by a rebalance (the store's partitions changed under it)
  is dropped and the previous snapshot kept; the next request tries again.

The snapshot is therefore at most ``max_age`` seconds plus one scan old; the
page says when it was taken (``as_of``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from itertools import islice
from typing import Any

from ..pipeline.series import SeriesStage, TopLifetimePoints
from ..schemas.base import utc_iso
from ..state.base import StateStore
from ..state.keys import customers_in

log = logging.getLogger("milestream.worker")


class LifetimeRanking:
    def __init__(
        self, series: SeriesStage, store: StateStore, size: int, max_age: float = 30.0, slice_size: int = 500
    ) -> None:
        self.series = series
        self.store = store
        self.size = size
        self.max_age = max_age
        self.slice_size = slice_size
        self._snapshot: TopLifetimePoints | None = None
        self._taken_at = 0.0  # monotonic
        self._as_of = ""
        self._scan: asyncio.Task | None = None

    async def rows(self, top: int, descending: bool) -> tuple[list[dict[str, Any]], str] | None:
        """The ``top`` customers (at most ``size``) and when their snapshot was taken; None if no scan finished."""
        stale = self._snapshot is None or time.monotonic() - self._taken_at > self.max_age
        if stale and (self._scan is None or self._scan.done()):
            self._scan = asyncio.ensure_future(self._refresh())
        if self._snapshot is None:
            await asyncio.shield(self._scan)  # type: ignore[arg-type]
        if self._snapshot is None:
            return None
        return self._snapshot.rows(min(top, self.size), descending), self._as_of

    async def _refresh(self) -> None:
        started_at = datetime.now(timezone.utc)
        started = time.monotonic()
        ranking = TopLifetimePoints(self.size)
        keys = customers_in(self.store)
        try:
            while True:
                batch = list(islice(keys, self.slice_size))
                if not batch:
                    break
                for customer in batch:
                    points = self.series.customer_points(self.store, customer)
                    ranking.add(customer.customer_id, points, customer.org_id)
                await asyncio.sleep(0)  # let the agents run between slices
        except RuntimeError:  # the partitions changed during the scan (a rebalance)
            log.warning("lifetime-points scan interrupted by a rebalance; keeping the previous snapshot")
            return
        except Exception:  # a page must not take the worker down; the next request scans again
            log.exception("lifetime-points scan failed")
            return
        self._snapshot, self._taken_at, self._as_of = ranking, started, utc_iso(started_at)
