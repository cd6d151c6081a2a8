"""Backfill, the worker's side: records of the past applied to one milestone created since.

A milestone may start before it is created (the spec's backdated milestones). The
records of its past are still on the input topics, but the worker applied them
before the milestone existed. ``milestream backfill`` (app/milestream/backfill/)
copies them, unchanged, to the backfill topic, on the partition they came from,
each with headers naming the milestone and its source (``topic/partition/offset``).
This stage applies each copy to that milestone alone, through the same engine,
with the record's own time, and keeps the hand-over with live processing exact:

* **Which records live processing applied the milestone to.** Per partition, a
  document records, for every milestone and every input position
  (``topic/partition``), the first offset the worker processed while the
  milestone was registered (``note_live``). A milestone registered before the
  partition kept any such marks counts as live from the start (a new consumer
  group reads every retained record with it).
* **A copy is applied** when live processing has already read the record (the
  customer's applied offset is at or past it), did so before the milestone was
  registered (below the mark), and no earlier copy of it was applied (the
  customer's own backfill marks, ``"bf"``). A record live processing has not read
  yet is left to it: the milestone is registered now, so it will count it.
* **Live input waits for the milestone.** Between a run's start and end markers on a
  partition (and, for a milestone created with ``backfill: true``, from its creation to
  its first run's end), live processing applies its records to every milestone but the
  one being backfilled, and keeps them for it (``defer``); the end marker applies them
  after every copy (``_apply_deferred``). So the running cycle's awards are decided in time order, as
  if the milestone had existed: a live record does not reach a threshold before the older
  records (or returns) of its cycle are counted.
* **Closes wait** on that partition too (``held``), so a past cycle closes once, with
  every record of it. Closes sent after a run flag themselves as backfilled
  (``flag_closes``); so do the outputs of the copies and of the kept live records (``flag``).

Everything lives in the partition's own store, so it moves with the partition and
is restored from the changelog like the customers' state. docs/backfill.md has the
operator's view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..engine.core import Engine
from ..engine.registry import Compiled
from ..schemas.base import utc_iso
from ..schemas.codec import Decoder, Rejected, decoder_for
from ..schemas.commands import BackfillMarker
from ..state.base import StateStore
from ..state.keys import Customer, Namespace, StateKey

if TYPE_CHECKING:
    from .topology import Processed, Record, Topology

HEADER_MILESTONE = "milestream.backfill"
HEADER_RUN = "milestream.run"
HEADER_SOURCE = "milestream.source"

BACKFILLED = "backfilled"  # a copy applied to its milestone
BACKFILL_SKIPPED = "backfill_skipped"  # a copy live processing counts (or counted), or one applied already
BACKFILL_MARKED = "backfill_marker"  # a run's start or end on a partition

RUNNING = "running"
DONE = "done"


class MilestoneNotLoaded(Exception):
    """A backfill names a milestone this worker's registry does not have (yet): retried, as the
    definitions follower may be a moment behind (pipeline/attempts.py)."""


def source_headers(milestone_id: str, run_id: str, source: str | None = None) -> list[tuple[str, bytes]]:
    """The headers of a copy (``source``: ``topic/partition/offset``) or of a marker (no source)."""
    headers = [(HEADER_MILESTONE, milestone_id.encode()), (HEADER_RUN, run_id.encode())]
    if source is not None:
        headers.append((HEADER_SOURCE, source.encode()))
    return headers


@lru_cache(maxsize=1024)
def marks_key(partition: int) -> StateKey:
    return Namespace.BACKFILL.key(str(partition))


@lru_cache(maxsize=4096)
def run_key(partition: int, milestone_id: str) -> StateKey:
    return Namespace.BACKFILL.key(f"{partition}|{milestone_id}")


@lru_cache(maxsize=4096)
def running_key(partition: int) -> StateKey:
    return Namespace.BACKFILL.key(f"{partition}|running")


def deferred_prefix(partition: int, milestone_id: str) -> str:
    return f"{partition}|{milestone_id}|d|"


def deferred_key(partition: int, milestone_id: str, customer: Customer) -> Any:
    return Namespace.BACKFILL.key(deferred_prefix(partition, milestone_id) + customer.qualified)


@dataclass(frozen=True, slots=True)
class Copy:
    milestone_id: str
    topic: str
    partition: int
    offset: int

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}"


class BackfillStage:
    def __init__(self, topology: Topology, *, awaits: bool = True) -> None:
        self.topology = topology
        self.awaits = awaits  # whether milestones created with ``backfill: true`` wait for their first run
        self.registry = topology.registry
        self.topic = topology.topics["backfill"].name
        self._markers: Decoder = decoder_for(("backfill_marker",), topology.settings.max_payload_bytes)
        # Per (partition, position): the registry version its marks were last checked against.
        self._checked: dict[tuple[int, str], str] = {}
        self._engines: dict[str, tuple[Compiled, Engine]] = {}
        self._live_engines: dict[tuple[frozenset[str], int], Engine] = {}
        # The partition documents read on every record (marks, runs), by key, with the store they were
        # read from: a batch's overlay is a new store, so the cache lasts one batch.
        self._docs: dict[StateKey, tuple[StateStore, dict | None]] = {}
        self._running_keys: dict[int, StateKey] = {}  # running_key by partition, made once (read per record)

    def _get(self, store: StateStore, key: StateKey) -> dict | None:
        cached = self._docs.get(key)
        if cached is not None and cached[0] is store:
            return cached[1]
        doc = store.get(key)
        self._docs[key] = (store, doc)
        return doc

    def _put(self, store: StateStore, key: StateKey, doc: dict | None) -> None:
        if doc is None:
            store.delete(key)
        else:
            store.put(key, doc)
        self._docs[key] = (store, doc)

    # ------------------------------------------------------------ live records
    def note_live(self, store: StateStore, record: Record) -> tuple[int, str] | None:
        """Before live processing applies ``record``: mark, for each milestone registered now and
        not yet marked at this position, that live processing applies it from this offset on.
        Returns what to ``confirm`` once the record is processed (None: nothing was checked)."""
        position = f"{record.topic}/{record.partition}"
        version = self.registry.milestones_version
        checked = (record.partition, position)
        if self._checked.get(checked) == version:
            return None
        key = marks_key(record.partition)
        doc = self._get(store, key)
        changed = doc is None
        if doc is None:
            # The partition's first record since it kept marks: what is registered now was live from the start.
            doc = {"m": {mid: None for mid in self.registry.milestones}}
        for milestone_id in self.registry.milestones:
            marks = doc["m"].setdefault(milestone_id, {})
            if marks is not None and position not in marks:
                marks[position] = record.offset
                changed = True
        if changed:
            self._put(store, key, doc)
        return checked

    def running(self, store: StateStore, partition: int) -> frozenset[str]:
        """The milestones with a backfill run under way on a partition, and those created to be
        backfilled whose first run has not ended there yet: their live records wait for it."""
        running = self._explicit(store, partition)
        awaiting = self.registry.awaiting_backfill - running if self.awaits else frozenset()
        if awaiting:
            running |= {mid for mid in awaiting if not self._ended(store, partition, mid)}
        return running

    def _explicit(self, store: StateStore, partition: int) -> frozenset[str]:
        """The milestones between a run's start and end markers on a partition."""
        key = self._running_keys.get(partition)
        if key is None:
            key = self._running_keys[partition] = running_key(partition)
        doc = self._get(store, key)
        return frozenset(doc["r"]) if doc else frozenset()

    def _ended(self, store: StateStore, partition: int, milestone_id: str) -> bool:
        run = self._get(store, run_key(partition, milestone_id))
        return run is not None and "done_at" in run

    def live_engine(self, running: frozenset[str]) -> Engine:
        """An engine over every milestone but those being backfilled (rebuilt when a definition changes)."""
        key = (running, self.registry.revision)
        engine = self._live_engines.get(key)
        if engine is None:
            self._live_engines.clear()  # one set of runs at a time, in practice
            engine = self._live_engines[key] = Engine(self.registry.without(running))
        return engine

    def defer(
        self, store: StateStore, record: Record, customer: Customer, running: frozenset[str], names: str | None
    ) -> None:
        """Keep a live record for each milestone of the customer's organisation being backfilled on its
        partition (``names``: the one milestone an enrolment is for): applied to it when the run ends."""
        entry = [
            record.topic,
            record.partition,
            record.offset,
            utc_iso(record.timestamp),
            (record.value or b"").decode(),
        ]
        for milestone_id in sorted(running):
            compiled = self.registry.milestones.get(milestone_id)
            if compiled is None or compiled.definition.org_id != customer.org_id or names not in (None, milestone_id):
                continue
            key = deferred_key(record.partition, milestone_id, customer)
            kept = store.get(key) or {"c": customer.to_json(), "r": []}
            kept["r"].append(entry)
            store.put(key, kept)

    def confirm(self, checked: tuple[int, str] | None) -> None:
        """The record ``note_live`` checked was processed: its marks are in the batch (a record
        that raised half-way is rolled back and checks again)."""
        if checked is not None:
            self._checked[checked] = self.registry.milestones_version

    # ----------------------------------------------------------------- copies
    def process(self, record: Record, store: StateStore) -> Processed:
        """One record of the backfill topic: a marker or a copy."""

        headers = dict(record.headers)
        try:
            milestone_id = headers[HEADER_MILESTONE].decode()
            run_id = headers[HEADER_RUN].decode()
        except (KeyError, UnicodeDecodeError):
            return self.topology.dead_letter(
                record, "schema_violation", f"a backfill record needs the {HEADER_MILESTONE} and {HEADER_RUN} headers"
            )
        if milestone_id not in self.registry.milestones:
            raise MilestoneNotLoaded(f"backfill of milestone {milestone_id!r}, which this worker has not loaded")
        if HEADER_SOURCE not in headers:
            processed = self._marker(record, store, milestone_id, run_id)
        else:
            processed = self._apply(record, store, milestone_id, headers[HEADER_SOURCE])
        processed.backfill = milestone_id
        return processed

    def _apply(self, record: Record, store: StateStore, milestone_id: str, raw: bytes) -> Processed:
        from .topology import Processed

        try:
            copy = self._copy(record, milestone_id, raw)
            event = self.topology.decoder(copy.topic).decode(record.value)
        except Rejected as exc:
            return self.topology.dead_letter(record, exc.reason, exc.detail)
        customer_id: str = event.customer_id  # type: ignore[attr-defined]
        if record.key is None or record.key != customer_id.encode():
            return self.topology.dead_letter(
                record, "wrong_key", f"key {record.key!r} does not match customer_id {customer_id!r}"
            )
        customer = Customer(event.org_id, customer_id)  # type: ignore[attr-defined]
        state = store.get(customer.state_key)
        if state is None or not self._applies(store, state, copy):
            return Processed(BACKFILL_SKIPPED)
        source = _source_record(record, copy)
        try:
            engine = self._engine(milestone_id)
            result = engine.apply(state, event, record.timestamp, source.source)  # type: ignore[arg-type]
        except Rejected as exc:
            return self.topology.dead_letter(record, exc.reason, f"backfill of {milestone_id}: {exc.detail}")
        state.setdefault("bf", {}).setdefault(milestone_id, {})[copy.position] = copy.offset
        flag(result.outputs, record.timestamp)
        processed = Processed(BACKFILLED)
        self.topology.commit_result(store, source, customer, state, result, processed, applied_by=engine)
        return processed

    def _copy(self, record: Record, milestone_id: str, raw: bytes) -> Copy:
        topic, _, rest = raw.decode(errors="replace").rpartition("/")
        topic, _, partition = topic.rpartition("/")
        if topic not in self.topology.backfill_sources or not partition.isdigit() or not rest.isdigit():
            raise Rejected("schema_violation", f"{HEADER_SOURCE} {raw!r} names no record of a customer input topic")
        if int(partition) != record.partition:
            raise Rejected(
                "schema_violation",
                f"a copy of {raw.decode(errors='replace')} must be on partition {partition}, not {record.partition}",
            )
        return Copy(milestone_id, topic, int(partition), int(rest))

    def _applies(self, store: StateStore, state: dict[str, Any], copy: Copy) -> bool:
        if copy.offset > state.get("o", {}).get(copy.position, -1):
            return False  # live processing has not read it yet: it will, with the milestone
        doc = self._get(store, marks_key(copy.partition))
        if doc is None:
            return False  # processed only before the partition kept marks: the milestone's history is unknown
        marks = doc["m"].get(copy.milestone_id, {})
        if marks is None:
            return False  # registered before the marks began: live processing applied it to everything
        mark = marks.get(copy.position)
        if mark is not None and copy.offset >= mark:
            return False  # live processing applied the milestone to it
        return copy.offset > state.get("bf", {}).get(copy.milestone_id, {}).get(copy.position, -1)

    def _engine(self, milestone_id: str) -> Engine:
        """An engine over this milestone alone (rebuilt when its compiled definition changes)."""
        compiled = self.registry.milestones[milestone_id]
        cached = self._engines.get(milestone_id)
        if cached is None or cached[0] is not compiled:
            cached = self._engines[milestone_id] = (compiled, Engine(self.registry.only(milestone_id)))
        return cached[1]

    # ---------------------------------------------------------------- markers
    def _marker(self, record: Record, store: StateStore, milestone_id: str, run_id: str) -> Processed:
        from .topology import Processed

        try:
            marker = self._markers.decode(record.value)
        except Rejected as exc:
            return self.topology.dead_letter(record, exc.reason, exc.detail)
        assert isinstance(marker, BackfillMarker)
        if (marker.milestone_id, marker.run_id) != (milestone_id, run_id):
            return self.topology.dead_letter(record, "schema_violation", "the marker's headers and value disagree")
        key = run_key(record.partition, milestone_id)
        run = self._get(store, key) or {}
        processed = Processed(BACKFILL_MARKED)
        if marker.marker == "start" and run.get("run") != run_id:
            self._put(store, key, {"run": run_id, "state": RUNNING, "started_at": utc_iso(record.timestamp)})
            self._set_running(store, record.partition, self._explicit(store, record.partition) | {milestone_id})
        elif marker.marker == "end" and run.get("run") == run_id and run.get("state") == RUNNING:
            self._apply_deferred(store, record.partition, milestone_id, processed)
            self._put(store, key, {**run, "state": DONE, "done_at": utc_iso(record.timestamp)})
            self._set_running(store, record.partition, self._explicit(store, record.partition) - {milestone_id})
        return processed

    def _set_running(self, store: StateStore, partition: int, running: frozenset[str]) -> None:
        self._put(store, running_key(partition), {"r": sorted(running)} if running else None)

    def _apply_deferred(self, store: StateStore, partition: int, milestone_id: str, processed: Processed) -> None:
        """Apply the live records kept during the run to the milestone, customer by customer, in the order
        live processing read them."""
        from .topology import Record

        engine = self._engine(milestone_id)
        for deferred_id in list(store.scan(Namespace.BACKFILL, deferred_prefix(partition, milestone_id))):
            key = Namespace.BACKFILL.key(deferred_id)
            kept = store.get(key)
            store.delete(key)
            customer = Customer.from_json(kept["c"]) if kept else None
            state = store.get(customer.state_key) if customer else None
            if kept is None or customer is None or state is None:
                continue
            for topic, source_partition, offset, moment, raw in kept["r"]:
                when = datetime.fromisoformat(moment)
                source = Record(topic, source_partition, offset, customer.customer_id.encode(), raw.encode(), when)
                try:
                    event = self.topology.decoder(topic).decode(source.value)
                    result = engine.apply(state, event, when, source.source)  # type: ignore[arg-type]
                except Rejected as exc:
                    letter = self.topology.dead_letter(source, exc.reason, f"backfill of {milestone_id}: {exc.detail}")
                    processed.records += letter.records
                    continue
                flag(result.outputs, when)
                self.topology.commit_result(store, source, customer, state, result, processed, applied_by=engine)

    # ----------------------------------------------------------------- closes
    def held(self, store: StateStore, partition: int, milestone_id: str) -> bool:
        """Whether a milestone's closes on a partition wait for a backfill run (or, created to be
        backfilled, for its first)."""
        run = store.get(run_key(partition, milestone_id))
        if self.awaits and milestone_id in self.registry.awaiting_backfill and (run is None or "done_at" not in run):
            return True
        return run is not None and run.get("state") == RUNNING

    def flag_closes(self, store: StateStore, partition: int, milestone_id: str, outputs: list[dict]) -> None:
        """Flag the closes a backfill run held (due before the run ended) as backfilled, as of their due time."""
        run = store.get(run_key(partition, milestone_id))
        if run is None or run.get("state") != DONE:
            return
        compiled = self.registry.milestones.get(milestone_id)
        buffer = compiled.buffer if compiled is not None else timedelta(0)
        done_at = datetime.fromisoformat(run["done_at"])
        for out in outputs:
            end = out.get("cycle", {}).get("end")
            if end is not None and (due := datetime.fromisoformat(end) + buffer) <= done_at:
                out["backfilled"] = True
                out["backfill_as_of"] = utc_iso(due)


def flag(outputs: list[dict], as_of: datetime) -> None:
    for out in outputs:
        out["backfilled"] = True
        out["backfill_as_of"] = utc_iso(as_of)


def _source_record(record: Record, copy: Copy) -> Record:
    """The copy as the record it was: the state's history and the outputs' cause name the original."""
    return type(record)(copy.topic, copy.partition, copy.offset, record.key, record.value, record.timestamp)
