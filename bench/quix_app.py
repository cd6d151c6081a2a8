"""The second baseline: a Quix Streams application doing milestone-like work on the same transactions.

Per customer (the record key) it keeps the month's gross spend in cents in Quix's
RocksDB state (with its changelog topic, as Quix does by default), and each time
that sum crosses 25, 50, 75 or 100 % of the benchmark target (5,000) it sends one
record to an output topic: one output per threshold, customer and month, so it
yields exactly as many outputs as the Milestream worker does on this workload.
What it leaves out is what Milestream adds on top: validation, definitions,
cycles and enrolment, the outbox, dead letters.

Run by ``bench.run`` as ``python -m bench.quix_app``, configured by a JSON object
in ``QUIX_BENCH_CONFIG``; the broker and its security come from the worker's
environment variables (``milestream.settings``). A small HTTP server on
``web_port`` answers ``/healthz`` and ``/progress`` (records processed), like the
naive Faust agent's pages. ``quixstreams`` comes with the ``bench`` extra.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from quixstreams import Application, State
from quixstreams.kafka.configuration import ConnectionConfig

from bench.workload import THRESHOLDS_CENTS
from milestream.settings import Settings

CONFIG = json.loads(os.environ.get("QUIX_BENCH_CONFIG") or "{}")
CONNECTION = Settings.from_env()
progress: dict[str, Any] = {"count": 0, "outputs": 0, "first_at": None, "last_at": None}


def connection_config(settings: Settings) -> ConnectionConfig:
    """The broker and its security, in librdkafka's terms."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol.lower(),
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_username"] = settings.kafka_sasl_username
        options["sasl_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_security_protocol.endswith("SSL"):
        for field, value in (
            ("ssl_ca_location", settings.kafka_ssl_cafile),
            ("ssl_certificate_location", settings.kafka_ssl_certfile),
            ("ssl_key_location", settings.kafka_ssl_keyfile),
            ("ssl_key_password", settings.kafka_ssl_key_password.get_secret_value()),
        ):
            if value:
                options[field] = value
    return ConnectionConfig(**options)


def cents(amount: str) -> int:
    """``"123.4"`` → 12340: the amounts are decimal strings with at most two decimals."""
    whole, _, fraction = amount.partition(".")
    return int(whole) * 100 + int((fraction + "00")[:2])


def milestones(event: dict[str, Any], state: State) -> list[dict[str, Any]]:
    """Add the bill to the customer's monthly sum; one output per threshold it crosses."""
    month = event["event_time"][:7]  # "2026-12": the workload's times are UTC
    before = state.get(month, 0)
    after = before + cents(event["gross_amount"])
    state.set(month, after)
    outputs = [
        {
            "customer_id": event["customer_id"],
            "month": month,
            "threshold_cents": threshold,
            "spend_cents": after,
            "cause": event["event_id"],
        }
        for threshold in THRESHOLDS_CENTS
        if before < threshold <= after
    ]
    now = time.time()
    if progress["first_at"] is None:
        progress["first_at"] = now
    progress["count"] += 1
    progress["outputs"] += len(outputs)
    progress["last_at"] = now
    return outputs


class Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path == "/healthz":
            body = b'{"status": "ok"}'
        elif self.path == "/progress":
            body = json.dumps(progress).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature of the base class
        pass  # one line per poll would only fill the log


def main() -> None:
    app = Application(
        broker_address=connection_config(CONNECTION),
        consumer_group=CONFIG.get("consumer_group", "quix-bench"),
        auto_offset_reset="earliest",
        commit_interval=float(CONFIG.get("commit_interval", 0.5)),
        processing_guarantee=CONFIG.get("processing_guarantee", "at-least-once"),
        state_dir=CONFIG.get("state_dir", ".local/bench/quix-state"),
        loglevel="INFO",
    )
    transactions = app.topic(CONFIG.get("topic", "transactions"), key_deserializer="bytes", value_deserializer="json")
    outputs = app.topic(CONFIG.get("output_topic", "quix-milestones"), key_serializer="bytes", value_serializer="json")
    sdf = app.dataframe(transactions)
    sdf = sdf.apply(milestones, stateful=True, expand=True)
    sdf.to_topic(outputs)
    server = ThreadingHTTPServer(("127.0.0.1", int(CONFIG.get("web_port", 6068))), Pages)
    threading.Thread(target=server.serve_forever, name="pages", daemon=True).start()
    try:
        app.run()  # until SIGTERM
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
