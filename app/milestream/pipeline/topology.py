"""The processing topology: input records in, output records out.

This is everything between the broker and the engine, free of Kafka and Faust:
decode and validate, route bad input to the dead-letter topic, skip input
already applied (redelivery after a crash), call the engine, encode outputs.
The worker's batch runtime (runtime/) feeds it records from the real broker;
the topology test driver feeds it records in-process. Both run this same code.

State applied once per input offset, outputs at least once
-----------------------------------------------------------
Each customer's state records the last input offset applied per source
partition (``"o"``). A redelivered record (offset at or below it) is not
applied again; its outputs are re-emitted from a small per-customer outbox
with the same deterministic ids, so a consumer that deduplicates on
``event_id`` sees each output exactly once. The outbox is a document of its
own (the customer's key in the outbox namespace, state/keys.py), written only
when an input produced outputs. The runtime's checkpoint acknowledges a
batch's outputs before it commits the state that records them
(runtime/checkpoint.py), so a redelivered input's outputs are already out; the outbox is
kept only for stores written record by record (the in-process driver and the
simulator), where a write can be lost between two others: the worker's
topology keeps none (``keep_outbox=False``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from ..engine.closing import close_due, due_closes
from ..engine.core import Engine, LateEvent, Result
from ..engine.lifecycle import apply_command
from ..engine.registry import Registry
from ..engine.returns import UnmatchedReturn
from ..schemas.base import utc_iso
from ..schemas.codec import Decoder, Rejected, decoder_for, dumps
from ..schemas.commands import CloseTick, MilestoneClone, MilestoneStatusChange
from ..schemas.definitions import OrganisationSettings
from ..schemas.series import SeriesDefinition, SeriesRewardChange
from ..settings import Settings
from ..state.base import StateStore
from ..state.keys import Customer, StateKey
from ..topics import TopicSpec
from . import read_index
from .backfill import BACKFILL_MARKED, BACKFILL_SKIPPED, BACKFILLED, BackfillStage
from .close_index import CloseIndex

# 2: documents live under namespaced keys (state/keys.py); state of version 1 must be rebuilt (docs/guarantees.md).
STATE_VERSION = 2


class Record:
    """One input record. Read only (``Final``: checked by mypy). A plain class, not a frozen
    dataclass: compiled, a dataclass's ``__init__`` stays interpreted, and a frozen one sets each
    field through ``object.__setattr__``: 0.7 µs a record, a fifth of its decoding."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "timestamp", "headers", "_source")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: datetime,  # when the record was recorded: its Kafka timestamp (worker/records.py)
        headers: tuple[tuple[str, bytes], ...] = (),  # read only on the backfill topic (pipeline/backfill.py)
    ) -> None:
        self.topic: Final = topic
        self.partition: Final = partition
        self.offset: Final = offset
        self.key: Final = key
        self.value: Final = value
        self.timestamp: Final = timestamp
        self.headers: Final = headers
        self._source: str | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "Record(" + ", ".join(repr(v) for v in self._fields()) + ")"

    def _fields(self) -> tuple[Any, ...]:
        return (self.topic, self.partition, self.offset, self.key, self.value, self.timestamp, self.headers)

    @property
    def source(self) -> str:
        """``topic/partition/offset``: the cause of its outputs, its history entries (made once: read
        two or three times a record)."""
        source = self._source
        if source is None:
            source = self._source = f"{self.topic}/{self.partition}/{self.offset}"
        return source


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None only for a tombstone on the compacted definitions topic
    partition: int | None = None  # set only for records to a chosen partition (close ticks)


# Outcomes of processing a record other than a dead-letter reason (the worker's metric labels).
APPLIED = "applied"  # applied, and it produced records (outputs, or input the worker feeds itself)
NO_OUTPUT = "no_output"  # applied to the customer's state (counted, or matched no milestone), produced nothing
NOTHING_DUE = "nothing_due"  # a close tick with no cycle due on its partition
NOTHING_TO_DELETE = "nothing_to_delete"  # a tombstone under a definitions key with no valid record
DUPLICATE = "duplicate"  # applied before (a redelivery): its outputs are re-emitted from the outbox
PROCESSED = frozenset(
    {APPLIED, NO_OUTPUT, NOTHING_DUE, NOTHING_TO_DELETE, DUPLICATE, BACKFILLED, BACKFILL_SKIPPED, BACKFILL_MARKED}
)


class Processed:
    """What processing one record did: ``outcome`` is one of ``PROCESSED`` or a
    dead-letter reason; ``records`` are to be produced. (A plain class: compiled, a dataclass's
    ``__init__`` stays interpreted, and one is made for every record.)"""

    def __init__(self, outcome: str, records: list[OutRecord] | None = None) -> None:
        self.outcome = outcome
        self.records: list[OutRecord] = [] if records is None else records
        self.milestone_events: list[dict[str, Any]] = []
        self.late_events = 0
        self.poison = False  # dead-lettered after processing raised again and again (pipeline/attempts.py)
        self.backfill: str | None = None  # the milestone of a backfill record (pipeline/backfill.py)

    def __repr__(self) -> str:
        return f"Processed({self.outcome!r}, {self.records!r})"


class Tally:
    """What a run of processed records did, counted: the worker's metrics add a slice of records at
    a time (``tally``), a metric's increment costing more than the counting."""

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}  # by (topic, outcome)
        self.dead_letters: dict[str, int] = {}  # by reason
        self.milestone_events: dict[str, int] = {}  # by kind
        self.late_events = 0
        self.backfill: dict[tuple[str, str], int] = {}  # by (milestone, outcome)


def tally(observed: list[tuple[Processed, str]]) -> Tally:
    """Count what each (record's processing, its topic) of ``observed`` did."""
    counted = Tally()
    outcomes, kinds = counted.outcomes, counted.milestone_events
    for processed, topic in observed:
        outcome = processed.outcome
        key = (topic, outcome)
        outcomes[key] = outcomes.get(key, 0) + 1
        if outcome not in PROCESSED:
            counted.dead_letters[outcome] = counted.dead_letters.get(outcome, 0) + 1
        for event in processed.milestone_events:
            kind = event["kind"]
            kinds[kind] = kinds.get(kind, 0) + 1
        counted.late_events += processed.late_events
        if processed.backfill is not None:
            run = (processed.backfill, outcome)
            counted.backfill[run] = counted.backfill.get(run, 0) + 1
    return counted


class Topology:
    """Routes records of every input topic; holds the definitions registry."""

    def __init__(
        self,
        settings: Settings,
        topics: dict[str, TopicSpec],
        registry: Registry | None = None,
        *,
        keep_outbox: bool = True,
        awaits_backfills: bool = True,
    ) -> None:
        """``keep_outbox=False``: the store is written a batch at a time, after the batch's outputs
        are acknowledged (the worker's checkpoint), so a redelivered input's outputs are already
        out and no outbox is kept (a redelivery then re-emits nothing). ``awaits_backfills=False``
        (the simulator, which applies every record with every milestone anyway): a milestone created
        with ``backfill: true`` is applied at once, not kept for a run (pipeline/backfill.py)."""
        self.settings = settings
        self.outbox_size = settings.outbox_size if keep_outbox else 0
        self.topics = topics
        self.registry = registry or Registry()
        # Per definitions key, the value of the last valid record (or the definition a lifecycle command produced).
        self._valid: dict[bytes, bytes] = {}
        self.engine = Engine(self.registry)
        self.promotions = topics["promotions"].name
        self.late_topic = topics["late-events"].name
        self.dead_letters = topics["dead-letters"].name
        self.definitions_topic = topics["definitions"].name
        self.ticks_topic = topics["close-ticks"].name
        self.backfill_topic = topics["backfill"].name
        self._decoders: dict[str, Decoder] = {
            spec.name: decoder_for(spec.value_types, settings.max_payload_bytes)
            for spec in topics.values()
            if spec.role == "input"
        }
        self.customer_topics = [
            spec.name
            for spec in topics.values()
            if spec.role == "input" and spec.name not in (self.definitions_topic, self.ticks_topic, self.backfill_topic)
        ]
        # What the worker's batch processor reads: the customers' events, the close ticks and backfill copies.
        self.partitioned_topics = [*self.customer_topics, self.ticks_topic, self.backfill_topic]
        from .series import SeriesStage  # imports this module

        self.series = SeriesStage(topics, self.outbox_size)
        # What a backfill copies: the customers' own events (not the commands Milestream writes itself).
        self.backfill_sources = [t for t in self.customer_topics if t not in self.series.command_topics]
        self.backfill = BackfillStage(self, awaits=awaits_backfills)
        self.read_index_bounds = {
            "history_per_cycle": settings.history_per_cycle,
            "history_cycles": settings.history_cycles,
        }

    # ------------------------------------------------------------- dead letters
    def dead_letter(self, record: Record, reason: str, detail: str) -> Processed:
        """A dead letter that always fits in a Kafka message: it keeps at most
        ``dead_letter_original_bytes`` of the original key and value, with the
        original sizes, the value's sha256 and whether anything was cut."""
        keep = self.settings.dead_letter_original_bytes
        value = record.value or b""
        key = record.key[:keep] if record.key is not None else None
        letter = {
            "type": "dead_letter",
            "schema_version": 1,
            "reason": reason,
            "detail": detail[:2000],
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key_b64": base64.b64encode(key).decode() if key is not None else None,
            "key_bytes": len(record.key) if record.key is not None else None,
            "value_b64": base64.b64encode(value[:keep]).decode(),
            "value_bytes": len(value),
            "value_sha256": hashlib.sha256(value).hexdigest(),
            "truncated": len(value) > keep or (record.key is not None and len(record.key) > keep),
            "failed_at": utc_iso(record.timestamp),
        }
        return Processed(reason, [OutRecord(self.dead_letters, key, dumps(letter))])

    # --------------------------------------------------------------- definitions
    def decode_definition(self, record: Record) -> BaseModel:
        """Validate a definitions-topic record; raises ``Rejected``."""
        try:
            item = self._decoders[record.topic].decode(record.value)
        except Rejected as exc:
            if exc.reason == "schema_violation":
                raise Rejected("invalid_definition", exc.detail) from None
            raise
        key = record.key.decode(errors="replace") if record.key is not None else None
        expected = getattr(item, "definitions_key", None) or (
            f"settings:{item.org_id}" if isinstance(item, OrganisationSettings) else item.milestone_id  # type: ignore[attr-defined]
        )
        if key != expected:
            raise Rejected("wrong_key", f"key {key!r} must be {expected!r}")
        return item

    def process_definition(self, record: Record) -> Processed:
        """Validate and apply one definitions record; dead-letter it if invalid.

        A lifecycle command (activate, deactivate, clone) yields the resulting
        definition, republished under the same key so the compacted topic
        keeps a full definition per milestone. A rejected record is followed by
        the key's current valid record (see ``_restore``), so it is never the
        last record under its key.
        """
        if record.value is None:
            return self._process_tombstone(record)
        try:
            item = self.decode_definition(record)
            milestone_id = getattr(item, "milestone_id", None)
            is_new = milestone_id not in self.registry.milestones
            listed_before = self._listed(milestone_id)
            if isinstance(item, SeriesDefinition):
                commands = self.series.process_definition(record, item)
                self._valid[record.key] = record.value  # type: ignore[index]  # the key was checked
                return Processed(APPLIED, commands)
            snapshot = apply_command(self.registry, item, record.timestamp)
        except Rejected as exc:
            processed = self.dead_letter(record, exc.reason, exc.detail)
            processed.records += self._restore(record)
            return processed
        processed = Processed(APPLIED)
        if snapshot is not None:
            value = dumps(snapshot.model_dump(mode="json", by_alias=True))
            processed.records.append(OutRecord(self.definitions_topic, snapshot.milestone_id.encode(), value))
            self._valid[record.key] = value  # type: ignore[index]
        elif not isinstance(item, (MilestoneStatusChange, MilestoneClone)):
            self._valid[record.key] = record.value  # type: ignore[index]
        processed.records += self._enrol_listed(
            milestone_id, self._listed(milestone_id) - listed_before, record, from_start=is_new
        )
        return processed

    def _restore(self, rejected: Record) -> list[OutRecord]:
        """What makes the compacted topic end with a valid record under a rejected record's key:
        the key's current valid record, the very bytes that were applied (so it decodes to the
        same definition and applying it again changes nothing and produces nothing), or a
        tombstone when the key has none (so compaction removes the rejected record instead of
        a new worker applying it in a different order of events, where it may pass)."""
        if rejected.key is None:
            return []  # a compacted topic refuses such records; the simulator has no keys to keep
        current = self._valid.get(rejected.key)
        if current == rejected.value:
            return []  # never republish what was just rejected (no loop, whatever the cause)
        return [OutRecord(self.definitions_topic, rejected.key, current)]

    def _process_tombstone(self, record: Record) -> Processed:
        """A null value: nothing to do for a key with no valid record (the tombstones ``_restore``
        writes); a definition that exists cannot be deleted, so it is republished."""
        if self._valid.get(record.key) is None:  # type: ignore[arg-type]
            return Processed(NOTHING_TO_DELETE)
        processed = self.dead_letter(
            record, "invalid_definition", "a definition cannot be deleted (deactivate the milestone instead)"
        )
        processed.records += self._restore(record)
        return processed

    def _listed(self, milestone_id: str | None) -> frozenset[str]:
        compiled = self.registry.milestones.get(milestone_id) if milestone_id else None
        return compiled.specific_customers if compiled else frozenset()

    def _enrol_listed(
        self, milestone_id: str | None, customers: frozenset[str], record: Record, *, from_start: bool
    ) -> list[OutRecord]:
        """An enrolment event for each customer newly on a milestone's "specific customers" list,
        so that the customer's partition opens (and will close) their cycle without activity.

        The audience a milestone is created with is enrolled from its start; customers added
        by a later edit, from the edit on."""
        if not customers or milestone_id is None:
            return []
        definition = self.registry.milestones[milestone_id].definition
        when = utc_iso(definition.starts_at if from_start else max(record.timestamp, definition.starts_at))
        topic = self.topics["enrolments"].name
        return [
            OutRecord(
                topic,
                customer.encode(),
                dumps(
                    {
                        "type": "enrolment",
                        "schema_version": 1,
                        "event_id": f"listed:{milestone_id}:{customer}",
                        "customer_id": customer,
                        "org_id": definition.org_id,
                        "event_time": when,
                        "milestone_id": milestone_id,
                    }
                ),
            )
            for customer in sorted(customers)
        ]

    def decoder(self, topic: str) -> Decoder:
        return self._decoders[topic]

    # ------------------------------------------------------------------ customers
    def process(self, record: Record, store: StateStore) -> Processed:
        """Process one record of a customer-keyed input topic (or a close tick, or a backfill copy)."""
        if record.topic == self.backfill_topic:
            return self.backfill.process(record, store)
        try:
            event, document = self._decoders[record.topic].decode_document(record.value)
        except Rejected as exc:
            return self.dead_letter(record, exc.reason, exc.detail)
        if isinstance(event, CloseTick):
            return self.process_tick(record, event, store)
        if isinstance(event, SeriesRewardChange):
            return self.series.process_command(record, event, store)
        customer_id: str = event.customer_id  # type: ignore[attr-defined]
        if record.key is None or record.key != customer_id.encode():
            return self.dead_letter(
                record, "wrong_key", f"key {record.key!r} does not match customer_id {customer_id!r}"
            )
        org_id: str = event.org_id  # type: ignore[attr-defined]
        milestone_id = getattr(event, "milestone_id", None)
        if milestone_id is not None and not self.registry.in_org(milestone_id, org_id):
            owner = self.registry.milestones[milestone_id].definition.org_id
            return self.dead_letter(
                record,
                "schema_violation",
                f"milestone {milestone_id!r} belongs to organisation {owner!r}, not {org_id!r}",
            )
        customer = Customer(org_id, customer_id)  # the same customer id in two organisations: two customers
        state_key = customer.state_key  # read and written: made once
        state = store.get(state_key) or {"v": STATE_VERSION}
        offsets: dict[str, int] = state.setdefault("o", {})
        position = f"{record.topic}/{record.partition}"
        if record.offset <= offsets.get(position, -1):
            # Already applied, but the writes that recorded it may be only local: a crash can
            # keep a local write whose changelog send was lost. Write them again (index entries
            # and outbox first, as the first time), so the record is acked only once the changelog
            # holds a state that includes it and the outbox entry that re-emits its outputs.
            processed = Processed(DUPLICATE, outbox_records(store, customer, record.source))
            self._rewrite(store, CloseIndex(store, record.partition), customer)
            return processed
        checked = self.backfill.note_live(store, record)
        engine = self.engine
        running = self.backfill.running(store, record.partition)
        if running:  # milestones being backfilled here get this record when their run ends (pipeline/backfill.py)
            self.backfill.defer(store, record, customer, running, milestone_id)
            engine = self.backfill.live_engine(running)
        try:
            if milestone_id is not None and milestone_id in running:
                result = Result()  # an enrolment into a milestone being backfilled: kept for it, as above
            else:
                result = engine.apply(state, event, record.timestamp, record.source)  # type: ignore[arg-type]
        except Rejected as exc:  # an enrolment the milestone cannot take (the state is untouched)
            self.backfill.confirm(checked)
            return self.dead_letter(record, exc.reason, exc.detail)
        series = self.series.apply(state, event, record)
        offsets[position] = record.offset
        processed = Processed(NO_OUTPUT)
        self.commit_result(
            store,
            record,
            customer,
            state,
            result,
            processed,
            series.records,
            series.events,
            document=document,
            state_key=state_key,
        )
        if processed.records:
            processed.outcome = APPLIED
        self.backfill.confirm(checked)
        return processed

    def commit_result(
        self,
        store: StateStore,
        record: Record,
        customer: Customer,
        state: dict[str, Any],
        result: Result,
        processed: Processed,
        series_records: Sequence[OutRecord] = (),
        series_events: Sequence[dict] = (),
        applied_by: Engine | None = None,
        document: dict[str, Any] | None = None,
        state_key: StateKey | None = None,
    ) -> None:
        """Write what applying one record to one customer did, in crash-safe order:
        close-index entries, then the outbox, then the state (see the module doc).
        ``applied_by``: an engine over fewer milestones that applied it (a backfill's): the read
        side is brought up to date for those alone, as the others did not change. ``document``:
        the record's value as decoded, if it was (the history describes the record from it). ``state_key``:
        the customer's state key, if the caller made it already."""
        org_id, customer_id = customer.org_id, customer.customer_id
        index = CloseIndex(store, record.partition)
        for due, milestone_id, cycle in result.opened:
            entry = index.add(due, milestone_id, customer, cycle)
            opened = state["m"][milestone_id].get("c", {}).get(str(cycle))
            if opened is not None:
                opened["i"] = entry  # so a rewrite (see _rewrite) writes this very entry again
        processed.milestone_events += [*result.outputs, *series_events]
        key = customer_id.encode()
        records = [OutRecord(self.promotions, key, dumps(out)) for out in result.outputs]
        records += series_records
        records += [OutRecord(self.late_topic, key, dumps(_late_record(late, record, org_id))) for late in result.late]
        records += [
            OutRecord(self.late_topic, key, dumps(_unmatched_record(u, record, org_id))) for u in result.unmatched
        ]
        processed.late_events += len(result.late)
        processed.records += records
        if records:
            # Outbox first: if only it survives a crash, the input is re-applied and
            # yields the same outputs; if the state survived without it, they could be lost.
            append_outbox(store, customer, record.source, records, self.outbox_size)
        engine = applied_by or self.engine
        read_index.maintain(store, engine, customer, state, result, record, document=document, **self.read_index_bounds)
        store.put(state_key or customer.state_key, state)

    # ------------------------------------------------------------- cycle close
    def process_tick(self, record: Record, tick: CloseTick, store: StateStore) -> Processed:
        """Close the cycles due at ``tick.now`` on the tick's partition, up to a batch.

        Write order makes a redelivered tick safe: each customer's close (index,
        outbox, state), then the tick's record of whom it closed, then the index
        advance. A tick found in its record re-emits those customers' outputs from
        their outboxes; one without re-runs, and customers it already closed
        re-emit from their outboxes too.
        """
        index = CloseIndex(store, record.partition)
        remembered = index.tick_done(record.offset)
        if remembered is not None:
            processed = Processed(DUPLICATE)
            for customer in map(Customer.from_json, remembered["c"]):
                processed.records += outbox_records(store, customer, record.source)
                self._rewrite(store, index, customer)
            index.rewrite(record.offset, remembered)
            if remembered["more"]:
                processed.records.append(self._continuation(record))
            return processed
        processed = Processed(NOTHING_DUE)
        budget = self.settings.close_batch_size
        closed: dict[Customer, None] = {}  # in order, and looked up once per entry
        advances: list[tuple[str, dict, int]] = []
        handled: set[tuple[Customer, str, int]] = set()  # a duplicate index entry is skipped
        more = False
        for slot in self._due_slots(index, store, tick.now):
            milestone_id = slot.split("|", 1)[1]
            counter = index.counter(slot)
            seq = counter["d"]
            while seq < counter["n"] and not more:
                found = index.entry(slot, seq)
                if found is not None and (found[0], milestone_id, found[1]) not in handled:
                    if budget == 0:
                        more = True
                        break
                    budget -= 1
                    handled.add((found[0], milestone_id, found[1]))
                    if self._close_customer(
                        store,
                        record,
                        found[0],
                        milestone_id,
                        found[1],
                        tick.now,
                        processed,
                        closed_now=found[0] in closed,
                    ):
                        closed[found[0]] = None
                seq += 1
            advances.append((slot, counter, seq))
            if more:
                break
        if closed:
            processed.outcome = APPLIED
            index.remember_tick(record.offset, list(closed), more)
        for slot, counter, done in advances:
            index.advance(slot, counter, done)
        # Closes can open cycles that are already due (a worker catching up after downtime).
        more = more or next(self._due_slots(index, store, tick.now), None) is not None
        if more:
            processed.records.append(self._continuation(record))
        return processed

    def _due_slots(self, index: CloseIndex, store: StateStore, now: datetime) -> Iterator[str]:
        """The due slots, but those of a milestone whose closes wait for a backfill (pipeline/backfill.py)."""
        for slot in index.due_slots(now):
            if not self.backfill.held(store, index.partition, slot.split("|", 1)[1]):
                yield slot

    def _close_customer(
        self,
        store: StateStore,
        record: Record,
        customer: Customer,
        milestone_id: str,
        cycle: int,
        now: datetime,
        processed: Processed,
        *,
        closed_now: bool,
    ) -> bool:
        """Close one customer's due cycles of a milestone; True if that produced outputs
        (``closed_now``: this tick already closed something of this customer)."""
        state = store.get(customer.state_key)
        ms = (state or {}).get("m", {}).get(milestone_id)
        if state is None or ms is None:
            return False
        if str(cycle) not in ms.get("c", {}):
            if closed_now:
                return False  # closed a moment ago with an earlier cycle of the same customer
            # Closed already: by this same tick before a crash (re-emit), or earlier.
            replay = outbox_records(store, customer, record.source)
            processed.records += replay
            return bool(replay)
        result = close_due(self.engine, state, customer.customer_id, now, milestone_id)
        # Not due after all (buffer days raised since it was indexed): index it again.
        result.opened += [
            (due, mid, index_)
            for due, mid, index_ in due_closes(self.engine, state)
            if mid == milestone_id and index_ == cycle and due > now
        ]
        self.backfill.flag_closes(store, record.partition, milestone_id, result.outputs)
        self.commit_result(store, record, customer, state, result, processed)
        return bool(result.outputs)

    def _rewrite(self, store: StateStore, index: CloseIndex, customer: Customer) -> None:
        """Write a customer's state, outbox and close-index entries again for an input that is
        already applied: the first writes may have reached the local store but not the
        changelog, so the input is acked only once the changelog holds them."""
        state = store.get(customer.state_key)
        if state is None:
            return
        for _, milestone_id, cycle in due_closes(self.engine, state):
            entry = state["m"][milestone_id]["c"][str(cycle)].get("i")
            if isinstance(entry, str):
                index.rewrite_entry(entry, customer, cycle)
        rewrite_outbox_and_state(store, customer, state)

    def _continuation(self, record: Record) -> OutRecord:
        """The same tick again, to close the rest of what is due after other input had its turn."""
        return OutRecord(self.ticks_topic, None, record.value or b"", partition=record.partition)


# ----------------------------------------------------------------- the outbox
def append_outbox(store: StateStore, customer: Customer, source: str, records: list[OutRecord], size: int) -> None:
    """Keep what an input produced, for re-emission if it is redelivered (the last ``size`` inputs;
    none when ``size`` is 0)."""
    if size <= 0:
        return
    key = customer.outbox_key
    outbox = store.get(key) or {"ob": []}
    plain = customer.customer_id.encode()
    # A record keyed otherwise than by the customer id (lifetime points of another organisation) keeps its key.
    entries = [
        [r.topic, (r.value or b"").decode()]
        if r.key == plain
        else [r.topic, (r.value or b"").decode(), (r.key or b"").decode()]
        for r in records
    ]
    if outbox["ob"] and outbox["ob"][-1][0] == source:
        outbox["ob"][-1][1] += entries  # a second close of this customer in the same tick
    else:
        outbox["ob"].append([source, entries])
    del outbox["ob"][:-size]
    store.put(key, outbox)


def outbox_records(store: StateStore, customer: Customer, source: str) -> list[OutRecord]:
    """What the input at ``source`` produced for this customer, to send again."""
    key = customer.customer_id.encode()  # outputs are keyed by customer id, as the inputs
    for kept, entries in (store.get(customer.outbox_key) or {}).get("ob", ()):
        if kept == source:
            return [
                OutRecord(entry[0], entry[2].encode() if len(entry) > 2 else key, entry[1].encode())
                for entry in entries
            ]
    return []


def rewrite_outbox_and_state(store: StateStore, customer: Customer, state: dict[str, Any]) -> None:
    """Write a customer's outbox and state again, unchanged, for a redelivered input: its first
    writes may have reached only the local store, and the input is acked once the changelog has them."""
    outbox_key = customer.outbox_key
    outbox = store.get(outbox_key)
    if outbox is not None:
        store.put(outbox_key, outbox)
    store.put(customer.state_key, state)


def _late_record(late: LateEvent, record: Record, org_id: str) -> dict[str, Any]:
    return {
        "type": "late_event",
        "schema_version": 1,
        "event_id": late.event_id,
        "customer_id": late.customer_id,
        "org_id": org_id,
        "milestone_id": late.milestone_id,
        "cycle_index": late.cycle,
        "cycle_end": utc_iso(late.cycle_end),
        "event_time": utc_iso(late.event_time),
        "recorded_at": utc_iso(late.recorded_at),
        "source": record.source,
    }


def _unmatched_record(unmatched: UnmatchedReturn, record: Record, org_id: str) -> dict[str, Any]:
    return {
        "type": "unmatched_return",
        "schema_version": 1,
        "event_id": unmatched.event_id,
        "customer_id": unmatched.customer_id,
        "org_id": org_id,
        "return_id": unmatched.return_id,
        "bill_id": unmatched.bill_id,
        "reason": unmatched.reason,
        "event_time": utc_iso(unmatched.event_time),
        "source": record.source,
    }
