"""``milestream simulate``: the engine over a file of events, event time as the clock.

Analysts use it to try a milestone on historical data before launching it.
It runs the same topology as the worker (decode, dead letters, engine, state),
closes cycles as event time passes their end (plus buffer days), and prints
every milestone event as one JSON line with sorted keys, so two runs over the
same input are byte-identical.

    milestream simulate --definitions milestones.json --events events.jsonl

``--definitions`` is a JSON object, a JSON array or JSON lines of
definitions-topic records (milestone definitions, organisation settings,
lifecycle commands). ``--events`` is JSON lines of customer events
(transactions, returns, behavioural events, ledger entries, activities,
enrolments), ideally in event-time order. A summary goes to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import IO, Any, Iterable, Iterator

import orjson

from .pipeline.close_index import CloseIndex, format_time
from .pipeline.topology import OutRecord, Record, Topology
from .schemas.base import EARLIEST, END_OF_RANGE, utc_iso
from .schemas.codec import dumps
from .settings import Settings
from .state.base import StateStore
from .state.memory import MemoryStore
from .topics import load_topics

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LAST_MOMENT = END_OF_RANGE - timedelta(microseconds=1)  # a later close tick would be invalid input


def _json_items(text: str) -> list[Any]:
    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            data = orjson.loads(text)
            return data if isinstance(data, list) else [data]
        except orjson.JSONDecodeError:
            pass  # JSON lines
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def _clock(raw: bytes) -> datetime | None:
    """The event's recorded time (or event time): the simulator's clock."""
    try:
        data = orjson.loads(raw)
        text = data.get("recorded_at") or data.get("event_time")
        moment = datetime.fromisoformat(text)
        # An out-of-range time is the event's error (it is rejected): it must not move the clock.
        return moment if moment.tzinfo and EARLIEST <= moment < END_OF_RANGE else None
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None


class Simulation:
    """Feeds records through a topology, closing cycles as the clock passes them."""

    def __init__(self, settings: Settings | None = None, store: StateStore | None = None) -> None:
        self.settings = settings or Settings()
        self.topics = load_topics(self.settings)
        self.topology = Topology(self.settings, self.topics)
        self.store = store or MemoryStore()
        self.topic_for_type = {
            value_type: spec.name
            for spec in self.topics.values()
            if spec.role == "input"
            for value_type in spec.value_types
        }
        self.clock = EPOCH
        self.outcomes: Counter[str] = Counter()
        self.close_index = CloseIndex(self.store, 0)  # the simulation is one partition
        self._offsets: Counter[str] = Counter()
        self.rejections: list[str] = []

    def _record(self, topic: str, key: str | None, raw: bytes, moment: datetime) -> Record:
        offset = self._offsets[topic]
        self._offsets[topic] += 1
        return Record(topic, 0, offset, key.encode() if key is not None else None, raw, moment)

    def load_definitions(self, items: Iterable[Any], moment: datetime) -> list[OutRecord]:
        out = []
        for item in items:
            key = item.get("milestone_id") or (
                f"series:{item['series_id']}" if item.get("series_id") else f"settings:{item.get('org_id')}"
            )
            raw = orjson.dumps(item)
            processed = self.topology.process_definition(self._record(self.topology.definitions_topic, key, raw, moment))
            self.outcomes[f"definitions:{processed.outcome}"] += 1
            out += [r for r in processed.records if r.topic == self.topology.dead_letters]
        return out

    def advance(self, now: datetime) -> Iterator[dict[str, Any]]:
        """Move the clock to ``now``, closing every cycle due by then (as the worker's close ticks do)."""
        self.clock = min(max(self.clock, now), LAST_MOMENT)  # --close-all asks for datetime.max
        tick = dumps({"type": "close_tick", "schema_version": 1, "now": utc_iso(self.clock)})
        while (due := self.close_index.next_due()) is not None and due <= format_time(self.clock):
            record = self._record(self.topology.ticks_topic, None, tick, self.clock)
            processed = self.topology.process(record, self.store)
            self.outcomes["cycle_close"] += sum(1 for e in processed.milestone_events if e["kind"] == "cycle_close")
            yield from processed.milestone_events

    def feed(self, raw: bytes) -> Iterator[dict[str, Any]]:
        """Process one JSON event line; yield the milestone events it caused."""
        moment = _clock(raw)
        if moment is not None:
            yield from self.advance(moment)
        try:
            data = orjson.loads(raw)
            event_type = data.get("type") if isinstance(data, dict) else None
            key = data.get("customer_id") if isinstance(data, dict) else None
        except orjson.JSONDecodeError:
            event_type, key = None, None
        topic = self.topic_for_type.get(event_type, self.topics["transactions"].name)
        processed = self.topology.process(self._record(topic, key, raw, moment or self.clock), self.store)
        self.outcomes[processed.outcome] += 1
        for letter in processed.records:
            if letter.topic == self.topology.dead_letters:
                detail = orjson.loads(letter.value)
                self.rejections.append(f"event {self._offsets[topic]}: {detail['reason']}: {detail['detail']}")
        yield from processed.milestone_events

    def finish(self, until: datetime | None) -> Iterator[dict[str, Any]]:
        """Close what is due at ``until`` (default: the clock), or everything if ``until`` is max."""
        yield from self.advance(until or self.clock)


def run(definitions: str, events: IO[bytes], out: IO[bytes], err: IO[str], *, until: datetime | None = None,
        store: StateStore | None = None) -> Counter[str]:
    simulation = Simulation(store=store)
    lines = (line for line in events if line.strip())
    first = next(lines, None)
    start = (_clock(first) if first else None) or EPOCH
    for letter in simulation.load_definitions(_json_items(definitions), start):
        err.write(f"definition rejected: {orjson.loads(letter.value)['detail']}\n")
    for raw in itertools.chain([first] if first else [], lines):
        for event in simulation.feed(raw.strip()):
            out.write(dumps(event) + b"\n")
    for event in simulation.finish(until):
        out.write(dumps(event) + b"\n")
    for line in simulation.rejections:
        err.write(f"rejected {line}\n")
    summary = ", ".join(f"{name}={count}" for name, count in sorted(simulation.outcomes.items()))
    err.write(f"simulated up to {simulation.clock.isoformat()}: {summary}\n")
    return simulation.outcomes


def main(args: argparse.Namespace) -> int:
    with open(args.definitions, "r", encoding="utf-8") as handle:
        definitions = handle.read()
    until = datetime.max.replace(tzinfo=timezone.utc) if args.close_all else (
        datetime.fromisoformat(args.until) if args.until else None
    )
    store = None
    if args.state:
        from .state.rocksdb import RocksDBStore

        store = RocksDBStore(args.state)
    events = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")
    try:
        run(definitions, events, sys.stdout.buffer, sys.stderr, until=until, store=store)
    finally:
        if events is not sys.stdin.buffer:
            events.close()
        if store is not None:
            store.close()
    return 0
