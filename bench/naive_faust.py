"""The baseline: the simplest useful Faust agent over the same transactions.

It reads raw bytes, decodes them with orjson and adds ``gross_amount`` to a
per-customer total in a RocksDB (rocksdict) table: the least a stateful Faust
job does per event. Milestream's worker does this plus validation, the
milestone engine and its outputs, on its own batch runtime rather than Faust's
per-message agents, so the ratio of the two says what that runtime buys over
the simplest Faust job despite the extra work.

Run by ``bench.run`` as ``python -m bench.naive_faust worker``, configured by a
JSON object in ``NAIVE_FAUST_CONFIG``; the broker and its security come from the
worker's environment variables (``milestream.settings``). ``/progress`` reports
how many records it has processed; ``/healthz`` answers once the web server is up.
"""

from __future__ import annotations

import json
import os
import time

import faust
import orjson

from milestream.kafka_client import faust_credentials
from milestream.settings import Settings

CONFIG = json.loads(os.environ.get("NAIVE_FAUST_CONFIG") or "{}")
CONNECTION = Settings.from_env()

app = faust.App(
    CONFIG.get("app_id", "naive-faust-bench"),
    broker=[f"kafka://{server.strip()}" for server in CONNECTION.kafka_bootstrap_servers.split(",")],
    broker_credentials=faust_credentials(CONNECTION),
    store="rocksdb://",
    datadir=CONFIG.get("data_dir", ".local/bench/naive-faust"),
    web_port=int(CONFIG.get("web_port", 6067)),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    topic_partitions=int(CONFIG.get("partitions", 8)),
    broker_commit_interval=float(CONFIG.get("commit_interval", 0.5)),
    broker_max_poll_records=int(CONFIG.get("max_poll_records", 2000)),
    stream_buffer_maxsize=int(CONFIG.get("stream_buffer_maxsize", 8192)),
    consumer_auto_offset_reset="earliest",
)

transactions = app.topic(
    CONFIG.get("topic", "transactions"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
totals = app.Table(
    "totals",
    default=float,
    partitions=int(CONFIG.get("partitions", 8)),
    options={"driver": "rocksdict"},
)
progress = {"count": 0, "first_at": None, "last_at": None}


@app.agent(transactions)
async def sum_spend(stream):
    async for value in stream:
        event = orjson.loads(value)
        customer = event["customer_id"]
        totals[customer] += float(event["gross_amount"])
        if progress["first_at"] is None:
            progress["first_at"] = time.time()
        progress["count"] += 1
        progress["last_at"] = time.time()


@app.page("/healthz")
async def healthz(web, request):
    return web.json({"status": "ok"})


@app.page("/progress")
async def progress_page(web, request):
    return web.json(progress)


if __name__ == "__main__":
    app.main()
