"""In-process throughput: the topology and the engine without a broker.

* ``driver``: ``TopologyTestDriver`` (decode, validate, engine, memory state,
  output encoding), with the topology configured as the worker's (no outbox: its checkpoint
  acknowledges a batch's outputs before it writes the state): the work the worker does per
  record, minus Kafka and Faust.
* ``engine``: ``Engine.apply`` alone on pre-decoded events and live state dicts.
* ``parts``: what every event needs whatever runs it, each part timed alone: the worker's decoder
  (JSON and validation) and a customer document's round trip through a partition's RocksDB store.
  With ``Engine.apply`` and the raw consumer's cost they make a floor (bench/report.py ``floor``).
* ``profile``: cProfile of the driver, the functions that take the most time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from datetime import datetime
from typing import Any

import orjson

from milestream.pipeline.driver import TopologyTestDriver
from milestream.schemas.codec import decoder_for
from milestream.schemas.inputs import Transaction
from milestream.settings import Settings
from milestream.state.base import encode_state
from milestream.state.rocksdb import RocksDBStore

from . import workload


def _driver(now: datetime) -> TopologyTestDriver:
    driver = TopologyTestDriver(keep_outbox=False)  # the worker's topology: its checkpoint needs no outbox
    processed = driver.pipe("definitions", workload.MILESTONE_ID, workload.definition(now))
    if processed.outcome != "applied":
        raise RuntimeError(f"the benchmark definition was rejected: {processed.outcome} {processed.records}")
    return driver


def driver_rate(records: list[tuple[bytes, bytes]], now: datetime) -> dict[str, Any]:
    driver = _driver(now)
    outputs = 0
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for key, value in records:
        processed = driver.pipe("transactions", key, value, timestamp=now)
        outputs += len(processed.records)
        outcomes[processed.outcome] = outcomes.get(processed.outcome, 0) + 1
    seconds = time.perf_counter() - started
    return {
        "events": len(records),
        "seconds": seconds,
        "rate": len(records) / seconds,
        "outputs": outputs,
        "outcomes": outcomes,
    }


def engine_rate(records: list[tuple[bytes, bytes]], now: datetime) -> dict[str, Any]:
    """``Engine.apply`` only: events decoded beforehand, state kept as dicts (no JSON round trip)."""
    driver = _driver(now)
    engine = driver.topology.engine
    started = time.perf_counter()
    events = [Transaction.model_validate_json(value) for _, value in records]
    decode_seconds = time.perf_counter() - started
    states: dict[str, dict[str, Any]] = {}
    outputs = 0
    started = time.perf_counter()
    for n, event in enumerate(events):
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = {"v": 1}
        outputs += len(engine.apply(state, event, now, f"bench/0/{n}").outputs)
    seconds = time.perf_counter() - started
    return {
        "events": len(events),
        "seconds": seconds,
        "rate": len(events) / seconds,
        "outputs": outputs,
        "decode_rate": len(events) / decode_seconds,
    }


def parts(records: list[tuple[bytes, bytes]], now: datetime, checkpoint_records: int) -> dict[str, Any]:
    """The per-event cost of two parts every event needs, each timed alone (µs/event):

    * ``decode``: the worker's decoder for the transactions topic (orjson, then pydantic);
    * ``state``: the customer's document read (from the checkpoint's pending writes, else from
      RocksDB), decoded and encoded with orjson, then a checkpoint's write of the pending documents to
      a partition's RocksDB store (sorted, no write-ahead log, as the worker's) every
      ``checkpoint_records`` events (one store: the worker's checkpoint splits the same writes
      across its partitions' stores). The documents are the engine's, made beforehand.

    Leaves out what the worker also does per event (history, read index, close index, outputs, the
    changelog, metrics), so the sum is below any real worker's cost."""
    decoder = decoder_for(("transaction",), Settings().max_payload_bytes)
    started = time.perf_counter()
    for _, value in records:
        decoder.decode(value)
    decode_seconds = time.perf_counter() - started

    # The document each event leaves, as the engine writes it.
    engine = _driver(now).topology.engine
    states: dict[str, dict[str, Any]] = {}
    documents: list[tuple[bytes, bytes]] = []
    for n, (key, value) in enumerate(records):
        event = Transaction.model_validate_json(value)
        state = states.setdefault(event.customer_id, {"v": 1})
        engine.apply(state, event, now, f"bench/0/{n}")
        documents.append((b"c:" + key, encode_state(state)))
    states.clear()

    with tempfile.TemporaryDirectory(prefix="milestream-bench-parts-") as folder:
        store = RocksDBStore(folder, changelog_flush_interval_s=Settings().state_flush_interval_s)
        pending: dict[bytes, bytes] = {}
        started = time.perf_counter()
        for n, (raw_key, document) in enumerate(documents):
            raw = pending.get(raw_key) or store._get(raw_key)
            orjson.dumps(orjson.loads(raw) if raw is not None else {})
            pending[raw_key] = document
            if (n + 1) % checkpoint_records == 0 or n == len(documents) - 1:
                store.write(pending)
                pending = {}
        state_seconds = time.perf_counter() - started
        store.close()
    return {
        "events": len(records),
        "decode_us": 1e6 * decode_seconds / len(records),
        "state_us": 1e6 * state_seconds / len(records),
    }


def index_cost(
    records: list[tuple[bytes, bytes]], now: datetime, checkpoint_records: int, rounds: int = 2
) -> dict[str, list[float]]:
    """µs per record of the worker's path on one partition, with the benchmark milestone's leaderboard
    off and on (``rounds`` of each, alternating): the topology into a batch's overlay, the
    checkpoint's write to a RocksDB store (as the worker's: no write-ahead log) every
    ``checkpoint_records`` records, and, with the leaderboard on, the API's counts mirror following
    the store. Leaves out Kafka (consuming, the changelog, the outputs), which the index adds nothing to."""
    from milestream.pipeline.leaderboards import CountsMirror
    from milestream.pipeline.topology import Record
    from milestream.state.overlay import OverlayStore

    out: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for setting in ("off", "on"):
            with tempfile.TemporaryDirectory(prefix="milestream-bench-index-") as folder:
                store = RocksDBStore(folder, changelog_flush_interval_s=Settings().state_flush_interval_s)
                driver = TopologyTestDriver(store=store, keep_outbox=False)
                driver.pipe("definitions", workload.MILESTONE_ID, workload.definition(now, leaderboard=setting == "on"))
                if setting == "on":
                    CountsMirror(store)
                topology, topic = driver.topology, driver.topic("transactions")
                overlay = OverlayStore(store)
                started = time.perf_counter()
                for n, (key, value) in enumerate(records):
                    overlay.begin()
                    topology.process(Record(topic, 0, n, key, value, now, ()), overlay)
                    if (n + 1) % checkpoint_records == 0 or n == len(records) - 1:
                        changes, _ = overlay.take_changes()
                        store.write(changes)
                out[setting].append(1e6 * (time.perf_counter() - started) / len(records))
                store.close()
    return out


def profile(records: list[tuple[bytes, bytes]], now: datetime, top: int = 20) -> tuple[str, list[dict[str, Any]]]:
    """cProfile of the driver: the full report text and the top functions by own time."""
    driver = _driver(now)
    profiler = cProfile.Profile()
    profiler.enable()
    for key, value in records:
        driver.pipe("transactions", key, value, timestamp=now)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": _where(filename, line, name),
                "calls": calls,
                "own_share": own / total,
                "cumulative_share": cumulative / total,
            }
        )
    rows.sort(key=lambda r: r["own_share"], reverse=True)
    text = io.StringIO()
    report = pstats.Stats(profiler, stream=text)
    report.sort_stats("tottime").print_stats(40)
    report.sort_stats("cumulative").print_stats(40)
    return text.getvalue(), rows[:top]


def _where(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name  # a builtin, e.g. "<built-in method orjson.dumps>"
    marker = "/milestream/"
    if marker in filename:
        filename = "milestream/" + filename.split(marker, 1)[1]
    elif "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    else:
        filename = filename.rsplit("/", 1)[-1]
    return f"{filename}:{line}({name})"
