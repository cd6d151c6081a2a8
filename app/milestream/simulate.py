"""``milestream simulate``: the engine over a file of events, event time as the clock.

Analysts use it to try a milestone on historical data before launching it.
It runs the same topology as the worker (decode, dead letters, engine, state),
closes cycles as event time passes their end (plus buffer days), and prints
every record the worker would emit (milestone and series events, lifetime points,
late events, unmatched returns, dead letters) as one JSON line with sorted keys,
in the order produced, so two runs over the same input are byte-identical.

    milestream simulate --definitions milestones.json --events events.jsonl

``--definitions`` is a JSON object, a JSON array or JSON lines of
definitions-topic records (milestone definitions, organisation settings,
lifecycle commands). ``--events`` is JSON lines of customer events
(transactions, returns, behavioural events, ledger entries, activities,
enrolments), ideally in event-time order. A summary goes to stderr: inputs by
outcome and outputs by kind.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import orjson

from .errors import UsageError, read_text_file
from .pipeline.close_index import CloseIndex, format_time
from .pipeline.topology import Record, Topology
from .schemas.base import EARLIEST, END_OF_RANGE, utc_iso
from .schemas.codec import dumps
from .settings import Settings
from .state.base import StateStore
from .state.memory import MemoryStore
from .topics import load_topics

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LAST_MOMENT = END_OF_RANGE - timedelta(microseconds=1)  # a later close tick would be invalid input


def json_items(text: str) -> list[Any]:
    """The items of a JSON document (an object or an array) or of JSON lines; ``UsageError`` if neither."""
    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            data = orjson.loads(text)
            return data if isinstance(data, list) else [data]
        except orjson.JSONDecodeError:
            pass  # JSON lines
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise UsageError(f"line {number}: neither a JSON document nor JSON lines ({exc})") from None
    return items


def _clock(raw: bytes) -> datetime | None:
    """The event's recorded time (or event time): the simulator's clock. None when it is not a
    time with an offset that converts to UTC (the event itself is rejected or stays unclocked)."""
    try:
        data = orjson.loads(raw)
        text = data.get("recorded_at") or data.get("event_time")
        moment = datetime.fromisoformat(text)
        moment.astimezone(timezone.utc)
        # An out-of-range time is the event's error (it is rejected): it must not move the clock.
        return moment if moment.tzinfo and EARLIEST <= moment < END_OF_RANGE else None
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, OverflowError):
        return None


def _definitions_key(item: Any) -> bytes | None:
    """The key a definitions item is published under (None for what is not an object: it is rejected)."""
    if not isinstance(item, dict):
        return None
    key = item.get("milestone_id") or (
        f"series:{item['series_id']}" if item.get("series_id") else f"settings:{item.get('org_id')}"
    )
    return str(key).encode()


class Simulation:
    """Feeds records through a topology, closing cycles as the clock passes them.

    What the topology produces on a topic the worker consumes (enrolments of a definition's
    customer list, close-tick continuations, series reward-change commands, republished
    definitions) is fed back in, as the broker feeds it back to the worker.
    """

    def __init__(self, settings: Settings | None = None, store: StateStore | None = None) -> None:
        self.settings = settings or Settings()
        self.topics = load_topics(self.settings)
        # A milestone created to be backfilled is simulated as having existed all along.
        self.topology = Topology(self.settings, self.topics, awaits_backfills=False)
        self.store = store or MemoryStore()
        self.topic_for_type = {
            value_type: spec.name
            for spec in self.topics.values()
            if spec.role == "input" and spec.name != self.topology.backfill_topic  # it only copies the others
            for value_type in spec.value_types
        }
        self.fed_back = {*self.topology.partitioned_topics, self.topology.definitions_topic}
        self.clock = EPOCH
        self.outcomes: Counter[str] = Counter()
        self.outputs: Counter[str] = Counter()  # emitted records by kind (milestone and series events) or type
        self.close_index = CloseIndex(self.store, 0)  # the simulation's own inputs are one partition
        self._offsets: Counter[str] = Counter()
        self.rejections: list[str] = []
        self.items = 0  # definitions items, then event lines, fed so far: how rejections are named

    def _record(self, topic: str, key: bytes | None, raw: bytes | None, moment: datetime, partition: int) -> Record:
        offset = self._offsets[topic]
        self._offsets[topic] += 1
        return Record(topic, partition, offset, key, raw, moment)

    def _run(self, topic: str, key: bytes | None, raw: bytes | None, moment: datetime) -> list[bytes]:
        """Process one record and, in order, what it produced on topics the worker consumes;
        return what all of them emitted on the output and dead-letter topics."""
        emitted: list[bytes] = []
        queue: deque[tuple[str, bytes | None, bytes | None, int]] = deque([(topic, key, raw, 0)])
        while queue:
            topic, key, raw, partition = queue.popleft()
            record = self._record(topic, key, raw, moment, partition)
            if topic == self.topology.definitions_topic:
                processed = self.topology.process_definition(record)
                self.outcomes[f"definitions:{processed.outcome}"] += 1
            else:
                processed = self.topology.process(record, self.store)
                self.outcomes[processed.outcome] += 1
            for out in processed.records:
                if out.topic in self.fed_back:
                    queue.append((out.topic, out.key, out.value, out.partition or 0))
                    continue
                emitted.append(out.value or b"")
                body = orjson.loads(out.value or b"{}")
                self.outputs[body.get("kind") or body["type"]] += 1  # milestone and series events by kind
                if out.topic == self.topology.dead_letters:
                    self.rejections.append(f"{self.items}: {body['reason']}: {body['detail']}")
        return emitted

    def load_definitions(self, items: Iterable[Any], moment: datetime) -> list[bytes]:
        """Apply definitions-topic items; return what they emitted (dead letters of rejected ones)."""
        emitted: list[bytes] = []
        for item in items:
            self.items += 1
            emitted += self._run(self.topology.definitions_topic, _definitions_key(item), orjson.dumps(item), moment)
        self.items = 0
        return emitted

    def advance(self, now: datetime) -> Iterator[bytes]:
        """Move the clock to ``now``, closing every cycle due by then (as the worker's close ticks do)."""
        self.clock = min(max(self.clock, now), LAST_MOMENT)  # --close-all asks for datetime.max
        tick = dumps({"type": "close_tick", "schema_version": 1, "now": utc_iso(self.clock)})
        while (due := self.close_index.next_due()) is not None and due <= format_time(self.clock):
            yield from self._run(self.topology.ticks_topic, None, tick, self.clock)

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """Process one JSON event line; yield what it caused the worker to emit."""
        self.items += 1
        moment = _clock(raw)
        if moment is not None:
            yield from self.advance(moment)
        try:
            data = orjson.loads(raw)
            event_type = data.get("type") if isinstance(data, dict) else None
            key = data.get("customer_id") if isinstance(data, dict) else None
        except orjson.JSONDecodeError:
            event_type, key = None, None
        topic = self.topic_for_type.get(event_type or "", self.topics["transactions"].name)
        yield from self._run(topic, key.encode() if isinstance(key, str) else None, raw, moment or self.clock)

    def finish(self, until: datetime | None) -> Iterator[bytes]:
        """Close what is due at ``until`` (default: the clock), or everything if ``until`` is max."""
        yield from self.advance(until or self.clock)


def run(
    definitions: str | list[Any],
    events: IO[bytes],
    out: IO[bytes],
    err: IO[str],
    *,
    until: datetime | None = None,
    store: StateStore | None = None,
) -> Counter[str]:
    """Simulate; return the counts of the summary: inputs by outcome ("definitions:" for definitions
    items) and outputs by kind (milestone and series events) or type (the other records)."""
    simulation = Simulation(store=store)
    lines = (line for line in events if line.strip())
    first = next(lines, None)
    start = (_clock(first) if first else None) or EPOCH
    items = json_items(definitions) if isinstance(definitions, str) else definitions
    for emitted in simulation.load_definitions(items, start):
        out.write(emitted + b"\n")
    for line in simulation.rejections:
        err.write(f"definition rejected: {line}\n")
    simulation.rejections.clear()
    for raw in itertools.chain([first] if first else [], lines):
        for emitted in simulation.feed(raw.strip()):
            out.write(emitted + b"\n")
    for emitted in simulation.finish(until):
        out.write(emitted + b"\n")
    for line in simulation.rejections:
        err.write(f"rejected event {line}\n")
    err.write(
        f"simulated up to {simulation.clock.isoformat()}: inputs {_counts(simulation.outcomes)}; "
        f"outputs {_counts(simulation.outputs) or 'none'}\n"
    )
    return simulation.outcomes + simulation.outputs


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name}={count}" for name, count in sorted(counter.items()))


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time with an offset from the command line; ``UsageError`` otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: not an ISO 8601 time (e.g. 2024-02-01T00:00:00+05:30)") from None
    if moment.tzinfo is None:
        raise UsageError(f"{option} {text!r}: needs a time zone offset (e.g. +00:00)")
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:
        raise UsageError(f"{option} {text!r}: out of range") from None
    return moment


def main(args: argparse.Namespace) -> int:
    text = read_text_file(args.definitions, "--definitions")
    try:
        definitions = json_items(text)
    except UsageError as exc:
        raise UsageError(f"--definitions {args.definitions}: {exc}") from None
    until = (
        datetime.max.replace(tzinfo=timezone.utc)
        if args.close_all
        else (parse_time(args.until, "--until") if args.until else None)
    )
    try:
        events = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")
    except OSError as exc:
        raise UsageError(f"--events {args.events}: {exc.strerror or exc}") from None
    store = None
    try:
        if args.state:
            store = _open_state(args.state)
        run(definitions, events, sys.stdout.buffer, sys.stderr, until=until, store=store)
    finally:
        if events is not sys.stdin.buffer:
            events.close()
        if store is not None:
            store.close()
    return 0


def _open_state(path: str) -> StateStore:
    from .state.rocksdb import RocksDBStore

    try:
        return RocksDBStore(path)
    except Exception as exc:  # rocksdict reports a bad folder with its own exception types
        raise UsageError(f"--state {path}: cannot open it as a RocksDB folder ({exc})") from None
