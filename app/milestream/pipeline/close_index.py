"""The close index: which customers of a partition have a cycle to close, by due time.

Closing a cycle for every enrolled customer must not scan all state. Instead,
when a customer's cycle opens, the topology appends ``(customer, cycle)`` to the
index of that customer's partition, under the cycle's due time (end plus buffer
days) rounded up to a 15-minute slot, and the milestone. A close tick for the
partition then walks only the slots that are due. Everything lives in the
partition's own state store, so it moves with the partition on a rebalance and
is restored from the changelog like the customers' state.

Keys, each in its own namespace of the store (state/keys.py; ``P`` is the partition,
slots are fixed-width UTC, so they sort as text)::

    CLOSE_DIRECTORY  P                        {"s": [pending "slot|milestone", sorted], "t": [recent tick offsets]}
    CLOSE_SLOT       P:slot|milestone         {"n": next sequence number, "d": first not yet closed}
    CLOSE_ENTRY      P:slot|milestone:seq     {"c": customer (Customer.to_json), "i": cycle index}
    CLOSE_TICK       P:offset                 {"c": [customers closed by that tick], "more": bool}

A customer's state names its entry by that entry's id (``"i"``).

Fixed (calendar, custom) cycles end at local midnights, which are whole
quarter-hours in every time zone, so they close exactly at their due time;
rolling cycles close up to 15 minutes after it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import lru_cache

from ..state.base import StateStore
from ..state.keys import Customer, Namespace, StateKey

SLOT_SECONDS = 15 * 60
RECENT_TICKS = 16  # ticks whose closes can be re-emitted after a redelivery


@lru_cache(maxsize=4096)  # a calendar cycle's customers share its due time
def slot_of(due: datetime) -> str:
    seconds = math.ceil(due.timestamp() / SLOT_SECONDS) * SLOT_SECONDS
    return format_time(datetime.fromtimestamp(seconds, tz=timezone.utc))


def format_time(moment: datetime) -> str:
    if moment.year >= 9999:
        return "9999-12-31T23:59:59Z"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def directory_key(partition: int) -> StateKey:
    return Namespace.CLOSE_DIRECTORY.key(str(partition))


def counter_key(partition: int, slot: str) -> StateKey:
    return Namespace.CLOSE_SLOT.key(f"{partition}:{slot}")


def entry_key(partition: int, slot: str, seq: int) -> StateKey:
    return Namespace.CLOSE_ENTRY.key(f"{partition}:{slot}:{seq}")


def tick_key(partition: int, offset: int) -> StateKey:
    return Namespace.CLOSE_TICK.key(f"{partition}:{offset}")


class CloseIndex:
    """The close index of one partition, on a state store."""

    def __init__(self, store: StateStore, partition: int) -> None:
        self.store = store
        self.partition = partition

    def add(self, due: datetime, milestone_id: str, customer: Customer, cycle: int) -> str:
        """Schedule a customer's cycle close; return the entry's id, which the customer's
        state keeps. Write before the customer's state, so a state that names an entry
        always has it (a duplicate entry is harmless)."""
        slot = f"{slot_of(due)}|{milestone_id}"
        key = counter_key(self.partition, slot)
        counter = self.store.get(key)
        if counter is None:
            counter = {"n": 0, "d": 0}
            directory = self.directory()
            if slot not in directory["s"]:
                directory["s"] = sorted([*directory["s"], slot])
                self.store.put(directory_key(self.partition), directory)
        entry = entry_key(self.partition, slot, counter["n"])
        self.store.put(entry, {"c": customer.to_json(), "i": cycle})
        counter["n"] += 1
        self.store.put(key, counter)
        return entry.id

    def rewrite_entry(self, entry_id: str, customer: Customer, cycle: int) -> None:
        """Write an entry, its slot's counter and the directory again, unchanged (see Topology._rewrite)."""
        self.store.put(Namespace.CLOSE_ENTRY.key(entry_id), {"c": customer.to_json(), "i": cycle})
        counter = Namespace.CLOSE_SLOT.key(entry_id.rsplit(":", 1)[0])  # the entry id without its ":seq"
        for key in (counter, directory_key(self.partition)):
            value = self.store.get(key)
            if value is not None:
                self.store.put(key, value)

    def directory(self) -> dict:
        return self.store.get(directory_key(self.partition)) or {"s": [], "t": []}

    def due_slots(self, now: datetime) -> Iterator[str]:
        """Pending "slot|milestone" keys due at ``now``, oldest first."""
        limit = format_time(now)
        for slot in self.directory()["s"]:
            if slot.split("|", 1)[0] > limit:
                return
            yield slot

    def next_due(self) -> str | None:
        slots = self.directory()["s"]
        return slots[0].split("|", 1)[0] if slots else None

    def counter(self, slot: str) -> dict:
        return self.store.get(counter_key(self.partition, slot)) or {"n": 0, "d": 0}

    def entry(self, slot: str, seq: int) -> tuple[Customer, int] | None:
        found = self.store.get(entry_key(self.partition, slot, seq))
        return (Customer.from_json(found["c"]), found["i"]) if found else None

    def advance(self, slot: str, counter: dict, done: int) -> None:
        """Mark entries before ``done`` closed; drop the slot once all are."""
        first = counter["d"]
        counter["d"] = done
        if done >= counter["n"]:
            self.store.delete(counter_key(self.partition, slot))
            directory = self.directory()
            directory["s"] = [s for s in directory["s"] if s != slot]
            self.store.put(directory_key(self.partition), directory)
        else:
            self.store.put(counter_key(self.partition, slot), counter)
        for seq in range(first, done):
            self.store.delete(entry_key(self.partition, slot, seq))

    # ------------------------------------------------------------ tick memory
    def tick_done(self, offset: int) -> dict | None:
        return self.store.get(tick_key(self.partition, offset))

    def rewrite(self, offset: int, remembered: dict) -> None:
        """Write a redelivered tick's record and the directory again (see Topology._rewrite)."""
        self.store.put(tick_key(self.partition, offset), remembered)
        self.store.put(directory_key(self.partition), self.directory())

    def remember_tick(self, offset: int, customers: list[Customer], more: bool) -> None:
        """Record what a tick closed (before advancing the index), so a redelivered tick re-emits it."""
        self.store.put(tick_key(self.partition, offset), {"c": [c.to_json() for c in customers], "more": more})
        directory = self.directory()
        recent = [*directory["t"], offset]
        for old in recent[:-RECENT_TICKS]:
            self.store.delete(tick_key(self.partition, old))
        directory["t"] = recent[-RECENT_TICKS:]
        self.store.put(directory_key(self.partition), directory)
