"""The processing topology: input records in, output records out.

This is everything between the broker and the engine, free of Kafka and Faust:
decode and validate, route bad input to the dead-letter topic, skip input
already applied (redelivery after a crash), call the engine, encode outputs.
The Faust worker feeds it records from the real broker; the topology test
driver feeds it records in-process. Both run this same code.

Exactly-once state, at-least-once outputs
-----------------------------------------
Each customer's state records the last input offset applied per source
partition (``"o"``). A redelivered record (offset at or below it) is not
applied again, but its state (and outbox entry) is written again: the first
write may have reached only the worker's local store, not the changelog. Its outputs, which may or may not have reached the broker
before the crash, are re-emitted from a small per-customer outbox with the
same deterministic ids, so a consumer that deduplicates on ``event_id`` sees
each output exactly once. The outbox lives under its own key
(``<customer>\x00outbox``), written before the state and only when an input
produced outputs, so the common no-output event does not carry it around.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from ..engine.core import Engine, LateEvent
from ..engine.lifecycle import apply_command
from ..engine.registry import Registry
from ..schemas.base import utc_iso
from ..schemas.codec import Decoder, Rejected, decoder_for, dumps
from ..schemas.definitions import OrganisationSettings
from ..settings import Settings
from ..state.base import StateStore
from ..topics import TopicSpec

STATE_VERSION = 1
OUTBOX_SUFFIX = "\x00outbox"


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: datetime  # the Kafka record timestamp

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes


@dataclass
class Processed:
    """What processing one record did: ``outcome`` is "applied", "duplicate",
    "ignored" or a dead-letter reason; ``records`` are to be produced."""

    outcome: str
    records: list[OutRecord] = field(default_factory=list)
    milestone_events: list[dict[str, Any]] = field(default_factory=list)
    late_events: int = 0


class Topology:
    """Routes records of every input topic; holds the definitions registry."""

    def __init__(self, settings: Settings, topics: dict[str, TopicSpec], registry: Registry | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.registry = registry or Registry()
        self.engine = Engine(self.registry)
        self.promotions = topics["promotions"].name
        self.late_topic = topics["late-events"].name
        self.dead_letters = topics["dead-letters"].name
        self.definitions_topic = topics["definitions"].name
        self._decoders: dict[str, Decoder] = {
            spec.name: decoder_for(spec.value_types, settings.max_payload_bytes)
            for spec in topics.values()
            if spec.role == "input"
        }
        self.customer_topics = [
            spec.name for spec in topics.values() if spec.role == "input" and spec.name != self.definitions_topic
        ]

    # ------------------------------------------------------------- dead letters
    def dead_letter(self, record: Record, reason: str, detail: str) -> Processed:
        letter = {
            "type": "dead_letter",
            "schema_version": 1,
            "reason": reason,
            "detail": detail[:2000],
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key_b64": base64.b64encode(record.key).decode() if record.key is not None else None,
            "value_b64": base64.b64encode(record.value or b"").decode(),
            "failed_at": utc_iso(record.timestamp),
        }
        return Processed(reason, [OutRecord(self.dead_letters, record.key, dumps(letter))])

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
        expected = (
            f"settings:{item.org_id}" if isinstance(item, OrganisationSettings) else item.milestone_id  # type: ignore[attr-defined]
        )
        if key != expected:
            raise Rejected("wrong_key", f"key {key!r} must be {expected!r}")
        return item

    def process_definition(self, record: Record) -> Processed:
        """Validate and apply one definitions record; dead-letter it if invalid.

        A lifecycle command (activate, deactivate, clone) yields the resulting
        definition, republished under the same key so the compacted topic
        keeps a full definition per milestone.
        """
        try:
            snapshot = apply_command(self.registry, self.decode_definition(record), record.timestamp)
        except Rejected as exc:
            return self.dead_letter(record, exc.reason, exc.detail)
        if snapshot is None:
            return Processed("applied")
        value = dumps(snapshot.model_dump(mode="json", by_alias=True))
        return Processed("applied", [OutRecord(self.definitions_topic, snapshot.milestone_id.encode(), value)])

    # ------------------------------------------------------------------ customers
    def process(self, record: Record, store: StateStore) -> Processed:
        """Process one record of a customer-keyed input topic."""
        try:
            event = self._decoders[record.topic].decode(record.value)
        except Rejected as exc:
            return self.dead_letter(record, exc.reason, exc.detail)
        customer_id: str = event.customer_id  # type: ignore[attr-defined]
        if record.key is None or record.key != customer_id.encode():
            return self.dead_letter(
                record, "wrong_key", f"key {record.key!r} does not match customer_id {customer_id!r}"
            )
        state = store.get(customer_id) or {"v": STATE_VERSION}
        offsets: dict[str, int] = state.setdefault("o", {})
        position = f"{record.topic}/{record.partition}"
        if record.offset <= offsets.get(position, -1):
            # Already applied, but the writes that recorded it may be only local: a crash can
            # keep a local write whose changelog send was lost. Write them again (outbox
            # first, as the first time), so the record is acked only once the changelog
            # holds a state that includes it and the outbox entry that re-emits its outputs.
            outbox_key = customer_id + OUTBOX_SUFFIX
            outbox = store.get(outbox_key) or {}
            processed = self._replay_outbox(outbox, record)
            if processed.records:
                store.put(outbox_key, outbox)
            store.put(customer_id, state)
            return processed
        result = self.engine.apply(state, event, record.timestamp, record.source)  # type: ignore[arg-type]
        offsets[position] = record.offset
        processed = Processed("applied" if result.outputs else "ignored")
        processed.milestone_events = result.outputs
        key = customer_id.encode()
        processed.records = [OutRecord(self.promotions, key, dumps(out)) for out in result.outputs]
        processed.records += [OutRecord(self.late_topic, key, dumps(_late_record(late, record))) for late in result.late]
        processed.late_events = len(result.late)
        if processed.records:
            # Outbox first: if only it survives a crash, the input is re-applied and
            # yields the same outputs; if the state survived without it, they could be lost.
            outbox_key = customer_id + OUTBOX_SUFFIX
            outbox = store.get(outbox_key) or {"ob": []}
            outbox["ob"].append([record.source, [[r.topic, r.value.decode()] for r in processed.records]])
            del outbox["ob"][: -self.settings.outbox_size]
            store.put(outbox_key, outbox)
        store.put(customer_id, state)
        return processed

    def _replay_outbox(self, outbox: dict[str, Any], record: Record) -> Processed:
        for source, entries in outbox.get("ob", ()):
            if source == record.source:
                records = [OutRecord(topic, record.key, value.encode()) for topic, value in entries]
                return Processed("duplicate", records)
        return Processed("duplicate")


def _late_record(late: LateEvent, record: Record) -> dict[str, Any]:
    return {
        "type": "late_event",
        "schema_version": 1,
        "event_id": late.event_id,
        "customer_id": late.customer_id,
        "milestone_id": late.milestone_id,
        "cycle_index": late.cycle,
        "cycle_end": utc_iso(late.cycle_end),
        "event_time": utc_iso(late.event_time),
        "recorded_at": utc_iso(late.recorded_at),
        "source": record.source,
    }


def utc_from_millis(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
