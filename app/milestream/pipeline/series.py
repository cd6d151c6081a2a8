"""Milestone series in the topology: definitions, customer events, reward-change fan-out.

The topology calls three hooks (docs/series.md):

* ``process_definition``: a ``milestone_series`` record on the definitions
  topic. When an edit changed tier rewards, it yields one
  ``series_reward_change`` command per partition of the series-commands topic
  (co-partitioned with the customer topics), so every partition's owner finds
  its customers who unlocked the tier.
* ``apply``: every customer event, after the milestone engine, on the same
  state document: memberships, redemptions, and ledger entries (series points
  and lifetime points).
* ``process_command``: a reward-change command on partition *p*: every
  customer whose state lives on *p* and holds the series is visited, with the
  same exactly-once rules as any input (applied offset per customer, outputs
  kept in the customer's outbox for re-emission after a crash).
"""

from __future__ import annotations

import heapq
from decimal import Decimal
from typing import Any

from mypy_extensions import mypyc_attr

from ..engine.series import SeriesEngine, SeriesRegistry, apply_series_definition, live_at
from ..schemas.base import DEFAULT_ORG, utc_iso
from ..schemas.codec import dumps
from ..schemas.series import SeriesDefinition, SeriesRewardChange
from ..state.base import StateStore
from ..state.keys import Customer, customers_in
from ..topics import TopicSpec
from .topology import (
    APPLIED,
    DUPLICATE,
    NO_OUTPUT,
    OutRecord,
    Processed,
    Record,
    append_outbox,
    outbox_records,
    rewrite_outbox_and_state,
)


@mypyc_attr(native_class=False)  # a str subclass: a plain Python class in the compiled build
class _Later(str):
    """A customer id that sorts backwards: the heaps below keep the earlier id of a tie."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)


class TopLifetimePoints:
    """The ``size`` highest and lowest lifetime points seen, in O(size) memory and O(log size) per customer.

    Ties rank by customer id. Each heap's first element is the worst customer it keeps.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._highest: list[tuple[Decimal, _Later, _Later]] = []  # (points, customer id, org id)
        self._lowest: list[tuple[Decimal, _Later, _Later]] = []

    def add(self, customer_id: str, points: Decimal | None, org_id: str = DEFAULT_ORG) -> None:
        if points is None:
            return
        self._keep(self._highest, (points, _Later(customer_id), _Later(org_id)))
        self._keep(self._lowest, (-points, _Later(customer_id), _Later(org_id)))

    def _keep(self, heap: list, entry: tuple[Decimal, _Later, _Later]) -> None:
        if len(heap) < self.size:
            heapq.heappush(heap, entry)
        elif heap[0] < entry:
            heapq.heapreplace(heap, entry)

    def rows(self, top: int, descending: bool = True) -> list[dict[str, Any]]:
        if descending:
            ranked = sorted(((-p, str(c), str(o)) for p, c, o in self._highest))
            return [{"customer_id": c, "org_id": o, "points": format(-p, "f")} for p, c, o in ranked[:top]]
        ranked = sorted(((-p, str(c), str(o)) for p, c, o in self._lowest))
        return [{"customer_id": c, "org_id": o, "points": format(p, "f")} for p, c, o in ranked[:top]]


class SeriesOutcome:
    """A series' part in one record (a plain class: made for every record, see Processed)."""

    def __init__(self, events: list[dict[str, Any]] | None = None) -> None:
        self.records: list[OutRecord] = []
        self.events: list[dict[str, Any]] = [] if events is None else events


def lifetime_key(customer: Customer) -> bytes:
    """The key of a customer's record on the compacted lifetime-points topic, which keeps one per customer:
    the customer id in the default organisation, ``["<org_id>","<customer_id>"]`` (JSON) in any other."""
    return (
        customer.customer_id.encode()
        if customer.org_id == DEFAULT_ORG
        else dumps([customer.org_id, customer.customer_id])
    )


def on_partition(state: dict[str, Any], partition: int) -> bool:
    """Whether a customer's state lives on ``partition``: the partition its inputs came from."""
    return any(position.rsplit("/", 1)[1] == str(partition) for position in state.get("o", ()))


class SeriesStage:
    def __init__(self, topics: dict[str, TopicSpec], outbox_size: int) -> None:
        self.registry = SeriesRegistry()
        self.engine = SeriesEngine(self.registry)
        self.promotions = topics["promotions"].name
        self.lifetime_topic = topics["lifetime-points"].name
        self.commands = topics["series-commands"]
        self.command_topics = (self.commands.name,)
        self.outbox_size = outbox_size

    # ---------------------------------------------------------------- definitions
    def process_definition(self, record: Record, item: SeriesDefinition) -> list[OutRecord]:
        """Apply a series definition (raises ``Rejected``); return the reward-change commands to send."""
        changes = apply_series_definition(self.registry, item)
        if not changes:
            return []
        command = SeriesRewardChange(
            series_id=item.series_id,
            series_name=item.name,
            version=record.source,
            changed_at=record.timestamp,
            changes=changes,
        )
        value = dumps(command.model_dump(mode="json", exclude_none=True))
        key = item.definitions_key.encode()
        return [OutRecord(self.commands.name, key, value, p) for p in range(self.commands.partitions)]

    # ------------------------------------------------------------------ customers
    def apply(self, state: dict[str, Any], event: Any, record: Record) -> SeriesOutcome:
        if not isinstance(event, SeriesEngine.consumes):
            return SeriesOutcome()  # a transaction, a return, a behavioural event: most records
        result = self.engine.apply(state, event, record.source)
        outcome = SeriesOutcome(events=result.events)
        key = event.customer_id.encode()
        outcome.records = [OutRecord(self.promotions, key, dumps(e)) for e in result.events]
        if result.lifetime is not None:
            customer = Customer(event.org_id, event.customer_id)
            outcome.records.append(OutRecord(self.lifetime_topic, lifetime_key(customer), dumps(result.lifetime)))
        return outcome

    # ------------------------------------------------------------------- commands
    def process_command(self, record: Record, command: SeriesRewardChange, store: StateStore) -> Processed:
        """Fan a reward change out to this partition's customers who unlocked the tier and have not redeemed it."""
        processed = Processed(NO_OUTPUT)
        position = f"{record.topic}/{record.partition}"
        for customer in list(customers_in(store)):  # listed first: the loop writes to the store
            state = store.get(customer.state_key)
            if not state or command.series_id not in state.get("sr", {}) or not on_partition(state, record.partition):
                continue
            offsets = state.setdefault("o", {})
            if record.offset <= offsets.get(position, -1):
                processed.records += outbox_records(store, customer, record.source)
                rewrite_outbox_and_state(store, customer, state)  # as Topology.process does
                processed.outcome = DUPLICATE
                continue
            events = self.engine.change_rewards(state, customer.customer_id, command, customer.org_id)
            if not events:
                continue
            offsets[position] = record.offset
            records = [OutRecord(self.promotions, customer.customer_id.encode(), dumps(e)) for e in events]
            append_outbox(store, customer, record.source, records, self.outbox_size)  # outbox first
            store.put(customer.state_key, state)
            processed.outcome = APPLIED
            processed.records += records
            processed.milestone_events += events
        return processed

    # -------------------------------------------------------------------- queries
    def lifetime_points(self, store: StateStore, customer_id: str, org_id: str = DEFAULT_ORG) -> dict[str, Any] | None:
        state = store.get(Customer(org_id, customer_id).state_key)
        if state is None or "lp" not in state:
            return None
        return {"customer_id": customer_id, "org_id": org_id, "points": state["lp"]}

    def customer_points(self, store: StateStore, customer: Customer) -> Decimal | None:
        """The lifetime points of a customer (None for customers without)."""
        state = store.get(customer.state_key)
        return Decimal(state["lp"]) if state and "lp" in state else None

    def lifetime_ranking(self, store: StateStore, top: int, descending: bool = True) -> list[dict[str, Any]]:
        """Customers in this store by lifetime points (ties by customer id), at most ``top``."""
        ranking = TopLifetimePoints(top)
        for customer in customers_in(store):
            ranking.add(customer.customer_id, self.customer_points(store, customer), customer.org_id)
        return ranking.rows(top, descending)

    def describe(self, now) -> dict[str, Any]:
        """The series this worker knows, for its /series page."""
        return {
            sid: {
                "name": s.name,
                "programs": s.program_ids,
                "tiers": [
                    {"tier_id": t.tier_id, "points": format(t.points, "f"), "reward": t.reward.reward_id}
                    for t in s.tiers
                ],
                "repeats": s.repeats,
                "promote_to_program_id": s.promote_to_program_id,
                "status": "live" if live_at(s, now) else "inactive" if not s.active else "not live",
                "starts_at": utc_iso(s.starts_at),
                "ends_at": utc_iso(s.ends_at) if s.ends_at else None,
            }
            for sid, s in sorted(self.registry.series.items())
        }
