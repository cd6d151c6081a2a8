"""The worker's milestone-series pages (docs/series.md).

* ``/series``: the series this worker knows, with their programs, tiers and status;
* ``/lifetime-points?top=N&order=desc|asc``: customers of this worker's partitions
  by lifetime points (a scan of the local state; the compacted
  ``lifetime-points`` topic is the view across every partition);
* ``/lifetime-points/{customer_id}``: one customer's lifetime points, when this
  worker holds the customer's partition.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

MAX_TOP = 10_000


def add_series_pages(app: Any, topology: Any, store: Any) -> None:
    series = topology.series

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
        rows = series.lifetime_ranking(store, top, descending=order == "desc")
        return web.json({"scope": "this worker's partitions", "order": order, "customers": rows})

    @app.page("/lifetime-points/{customer_id}")
    async def lifetime_customer_page(web, request, customer_id):
        row = series.lifetime_points(store, customer_id)
        if row is None:
            return web.json({"error": f"no lifetime points for {customer_id!r} on this worker"}, status=404)
        return web.json(row)
