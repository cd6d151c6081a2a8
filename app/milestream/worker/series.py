"""The worker's milestone-series pages (docs/series.md).

* ``/series``: the series this worker knows, with their programs, tiers and status;
* ``/lifetime-points?top=N&order=desc|asc``: customers of this worker's partitions
  by lifetime points, from a snapshot refreshed in the background (ranking.py;
  the compacted ``lifetime-points`` topic is the view across every partition);
* ``/lifetime-points/{customer_id}?org_id=ORG``: one customer's lifetime points (of the
  default organisation without ``org_id``), when this worker holds the customer's partition.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..schemas.base import DEFAULT_ORG
from .ranking import LifetimeRanking

MAX_TOP = 10_000
RANKING_MAX_AGE_S = 30.0


def add_series_pages(app: Any, topology: Any, store: Any) -> None:
    series = topology.series
    ranking = LifetimeRanking(series, store, MAX_TOP, max_age=RANKING_MAX_AGE_S)

    @app.page("/series")
    async def series_page(web, request):
        return web.json(series.describe(datetime.now(timezone.utc)))

    @app.page("/lifetime-points")
    async def lifetime_ranking_page(web, request):
        try:
            top = min(max(int(request.query.get("top", "100")), 1), MAX_TOP)
        except ValueError:
            return web.json({"error": "top must be a whole number"}, status=400)
        order = request.query.get("order", "desc")
        if order not in ("asc", "desc"):
            return web.json({"error": "order must be asc or desc"}, status=400)
        snapshot = await ranking.rows(top, descending=order == "desc")
        if snapshot is None:
            return web.json(
                {"error": "the ranking is not computed yet; try again"}, status=503, headers={"Retry-After": "5"}
            )
        rows, as_of = snapshot
        return web.json({"scope": "this worker's partitions", "order": order, "as_of": as_of, "customers": rows})

    @app.page("/lifetime-points/{customer_id}")
    async def lifetime_customer_page(web, request, customer_id):
        row = series.lifetime_points(store, customer_id, request.query.get("org_id", DEFAULT_ORG))
        if row is None:
            return web.json({"error": f"no lifetime points for {customer_id!r} on this worker"}, status=404)
        return web.json(row)
