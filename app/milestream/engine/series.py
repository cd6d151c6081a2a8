"""The milestone-series engine: pure and deterministic, no I/O and no clock.

Ledger entries, program memberships and reward redemptions update a customer's
series state (a JSON-able dict, in place) and yield ``series_event`` outputs;
the same input on the same state always yields the same outputs with the same
ids (engine/ids.py). See docs/series.md for the rules.

Customer state layout (beside the milestone engine's keys)::

    {"pg": {program_id: iso},         # programs the customer is a member of, since when
     "lp": "dec",                     # lifetime points
     "sr": {series_id: {
        "rep": int,                   # current repetition (1-based)
        "pts": "dec",                 # points counted in the current repetition
        "done": int,                  # repetitions completed
        "pr": 1,                      # promoted (at most once)
        "u": {"<rep>/<tier_id>": {    # tiers unlocked, per repetition
            "rw": {reward},           # the reward the customer can claim (or claimed)
            "rd": reward_id,          # set once redeemed
        }},
     }}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from ..schemas.base import DEFAULT_ORG, utc_iso
from ..schemas.codec import Rejected
from ..schemas.inputs import LedgerEntry
from ..schemas.series import (
    ProgramMembership,
    RewardRedemption,
    SeriesDefinition,
    SeriesRewardChange,
    SeriesTier,
    TierRewardChange,
)
from .ids import event_id

ZERO = Decimal(0)
LIFETIME_CURRENCY = "points"


def _fmt(value: Decimal) -> str:
    return format(value, "f")


def _reward(tier: SeriesTier) -> dict[str, Any]:
    return tier.reward.model_dump(mode="json", exclude_none=True)


def series_event_id(series_id: str, customer_id: str, kind: str, *parts: object) -> str:
    """Id of a series event: at most one per (series, customer, kind, repetition, tier[, version])."""
    return event_id("series-event", series_id, customer_id, kind, *parts)


# --------------------------------------------------------------------- registry
def live_at(series: SeriesDefinition, moment: datetime) -> bool:
    return series.active and series.starts_at <= moment and (series.ends_at is None or moment < series.ends_at)


def _overlap(a: SeriesDefinition, b: SeriesDefinition) -> bool:
    a_end, b_end = a.ends_at, b.ends_at
    return (b_end is None or a.starts_at < b_end) and (a_end is None or b.starts_at < a_end)


@dataclass
class SeriesRegistry:
    """Every series a worker knows, indexed by program."""

    series: dict[str, SeriesDefinition] = field(default_factory=dict)
    _by_program: dict[str, list[SeriesDefinition]] = field(default_factory=dict)

    def put(self, definition: SeriesDefinition) -> None:
        self.series[definition.series_id] = definition
        index: dict[str, list[SeriesDefinition]] = {}
        for item in sorted(self.series.values(), key=lambda s: (s.starts_at, s.series_id)):
            for program in item.program_ids:
                index.setdefault(program, []).append(item)
        self._by_program = index

    def live_for_program(self, program_id: str, moment: datetime, org_id: str) -> SeriesDefinition | None:
        """The program's active series at ``moment`` in an organisation (the lifecycle keeps it to at most one)."""
        for item in self._by_program.get(program_id, ()):
            if item.org_id == org_id and live_at(item, moment):
                return item
        return None


_IMMUTABLE = ("org_id", "starts_at", "repeats", "currency", "sources")


def apply_series_definition(registry: SeriesRegistry, item: SeriesDefinition) -> list[TierRewardChange]:
    """Create or edit a series; return the tier rewards the edit changed.

    Raises ``Rejected("invalid_definition", ...)`` and changes nothing when the
    edit changes what may not change, or when a program would get a second
    active series at the same time.
    """
    current = registry.series.get(item.series_id)
    if current == item:
        return []
    where = f"series {item.series_id!r}"
    if current is not None:
        for name in _IMMUTABLE:
            if getattr(current, name) != getattr(item, name):
                raise Rejected(
                    "invalid_definition",
                    f"{where}: {name} cannot be changed after creation (no back-dating; publish a new series instead)",
                )
        if [(t.tier_id, t.points) for t in current.tiers] != [(t.tier_id, t.points) for t in item.tiers]:
            raise Rejected(
                "invalid_definition",
                f"{where}: tiers and their points cannot be changed after creation; only names and rewards can",
            )
    if item.active:
        for other in sorted(registry.series.values(), key=lambda s: s.series_id):
            if other.series_id == item.series_id or not other.active or other.org_id != item.org_id:
                continue
            shared = sorted(set(other.program_ids) & set(item.program_ids))
            if shared and _overlap(item, other):
                raise Rejected(
                    "invalid_definition",
                    f"{where}: program {shared[0]!r} already has an active series {other.series_id!r} "
                    f"at the same time; a program can have only one active series (deactivate or end it first)",
                )
    registry.put(item)
    if current is None:
        return []
    return [
        TierRewardChange(tier_id=new.tier_id, reward=new.reward, previous_reward=old.reward)
        for old, new in zip(current.tiers, item.tiers)
        if old.reward != new.reward
    ]


# ----------------------------------------------------------------------- engine
@dataclass
class SeriesResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    lifetime: dict[str, Any] | None = None  # the customer's lifetime-points record, when they changed


class SeriesEngine:
    """Applies customer events to series state under a series registry."""

    # The events ``apply`` reads: every other event leaves series state alone.
    consumes: ClassVar[tuple[type[LedgerEntry], type[ProgramMembership], type[RewardRedemption]]] = (
        LedgerEntry,
        ProgramMembership,
        RewardRedemption,
    )

    def __init__(self, registry: SeriesRegistry) -> None:
        self.registry = registry

    def apply(self, state: dict[str, Any], event: Any, cause: str) -> SeriesResult:
        result = SeriesResult()
        if isinstance(event, LedgerEntry):
            self._lifetime(state, event, cause, result)
            for series in self.series_for(state, event.event_time, event.org_id):
                if event.currency == series.currency and event.source in series.sources:
                    self.add_points(
                        state, series, event.customer_id, Decimal(event.amount), event.event_time, cause, result
                    )
        elif isinstance(event, ProgramMembership):
            programs = state.setdefault("pg", {})
            if event.action == "join":
                programs.setdefault(event.program_id, utc_iso(event.event_time))
            else:
                programs.pop(event.program_id, None)
                if not programs:
                    del state["pg"]
        elif isinstance(event, RewardRedemption):
            self.redeem(state, event)
        return result

    def series_for(self, state: dict[str, Any], moment: datetime, org_id: str) -> list[SeriesDefinition]:
        """The series a customer collects points in at ``moment``: the live series of their programs
        in their organisation."""
        found: dict[str, SeriesDefinition] = {}
        for program in sorted(state.get("pg", ())):
            series = self.registry.live_for_program(program, moment, org_id)
            if series is not None:
                found[series.series_id] = series
        return [found[sid] for sid in sorted(found)]

    # -------------------------------------------------------------- lifetime
    def _lifetime(self, state: dict[str, Any], entry: LedgerEntry, cause: str, result: SeriesResult) -> None:
        """Lifetime points: every credit of points, and manual adjustments either way.
        Spending (a debit from any other source) does not lower them."""
        if entry.currency != LIFETIME_CURRENCY or (entry.amount <= 0 and entry.source != "adjustment"):
            return
        if entry.amount == 0:
            return
        total = Decimal(state.get("lp", "0")) + Decimal(entry.amount)
        state["lp"] = _fmt(total)
        result.lifetime = {
            "type": "lifetime_points",
            "schema_version": 1,
            "customer_id": entry.customer_id,
            "org_id": entry.org_id,
            "points": _fmt(total),
            "updated_at": utc_iso(entry.event_time),
            "cause": cause,
        }

    # ---------------------------------------------------------------- points
    def add_points(
        self,
        state: dict[str, Any],
        series: SeriesDefinition,
        customer_id: str,
        amount: Decimal,
        moment: datetime,
        cause: str,
        result: SeriesResult,
    ) -> None:
        """Count points in a series: unlock reached tiers, complete repetitions (the excess over the
        last tier carries into the next one), promote on the final completion."""
        ss = state.setdefault("sr", {}).setdefault(series.series_id, {"rep": 1, "pts": "0", "done": 0, "u": {}})
        if ss["done"] >= series.repetitions:
            return  # finished: no repetition left
        points = Decimal(ss["pts"]) + amount
        last = series.tiers[-1].points
        while True:
            rep = ss["rep"]
            for index, tier in enumerate(series.tiers, 1):
                key = f"{rep}/{tier.tier_id}"
                if points >= tier.points and key not in ss["u"]:
                    ss["u"][key] = {"rw": _reward(tier)}
                    result.events.append(
                        self._event(
                            state,
                            series,
                            customer_id,
                            "tier_unlocked",
                            rep,
                            points,
                            moment,
                            cause,
                            ids=(rep, tier.tier_id),
                            tier=(index, tier),
                            reward=ss["u"][key]["rw"],
                        )
                    )
            if points < last:
                break
            ss["done"] = rep
            final = rep >= series.repetitions
            result.events.append(
                self._event(
                    state,
                    series,
                    customer_id,
                    "series_completed",
                    rep,
                    points,
                    moment,
                    cause,
                    ids=(rep,),
                    final=final,
                )
            )
            if final:
                if series.promote_to_program_id is not None and not ss.get("pr"):
                    ss["pr"] = 1
                    result.events.append(
                        self._event(
                            state,
                            series,
                            customer_id,
                            "program_promotion",
                            rep,
                            points,
                            moment,
                            cause,
                            ids=(),
                            final=True,
                            promote_to=series.promote_to_program_id,
                        )
                    )
                break
            points -= last  # the excess carries into the next repetition
            ss["rep"] = rep + 1
        ss["pts"] = _fmt(points)

    # ------------------------------------------------------------ redemption
    def redeem(self, state: dict[str, Any], event: RewardRedemption) -> bool:
        """Record a redemption of an unlocked tier's reward; False when there is nothing to redeem."""
        unlocked = state.get("sr", {}).get(event.series_id, {}).get("u", {})
        entry = unlocked.get(f"{event.repetition}/{event.tier_id}")
        if entry is None or "rd" in entry:
            return False
        entry["rd"] = event.reward_id
        return True

    # -------------------------------------------------------- reward changes
    def change_rewards(
        self, state: dict[str, Any], customer_id: str, command: SeriesRewardChange, org_id: str = DEFAULT_ORG
    ) -> list[dict[str, Any]]:
        """Give the new reward of each changed tier to this customer if they unlocked it and have not
        redeemed it; who redeemed keeps what they redeemed."""
        ss = state.get("sr", {}).get(command.series_id)
        if ss is None:
            return []
        series = self.registry.series.get(command.series_id)
        events = []
        for change in command.changes:
            new = change.reward.model_dump(mode="json", exclude_none=True)
            holders = [(int(key.split("/", 1)[0]), key) for key in ss["u"] if key.split("/", 1)[1] == change.tier_id]
            for rep, key in sorted(holders):
                entry = ss["u"][key]
                if "rd" in entry or entry["rw"] == new:
                    continue
                previous, entry["rw"] = entry["rw"], new
                index, tier = _tier(series, change.tier_id) if series else (None, None)
                events.append(
                    {
                        "type": "series_event",
                        "schema_version": 1,
                        "event_id": series_event_id(
                            command.series_id, customer_id, "tier_reward_changed", rep, change.tier_id, command.version
                        ),
                        "kind": "tier_reward_changed",
                        "customer_id": customer_id,
                        "org_id": org_id,
                        "series_id": command.series_id,
                        "series_name": command.series_name,
                        "repetition": rep,
                        "repetitions": series.repetitions if series else max(rep, ss["rep"]),
                        "final": False,
                        "tier": _tier_ref(index, tier) if tier and index is not None else None,
                        "reward": new,
                        "previous_reward": previous,
                        # a completed earlier repetition reached the last tier; the current one has its count
                        "series_points": ss["pts"]
                        if rep == ss["rep"] or series is None
                        else _fmt(series.tiers[-1].points),
                        "program_ids": _programs(state, series) if series else [],
                        "promote_to_program_id": None,
                        "occurred_at": utc_iso(command.changed_at),
                        "cause": command.version,
                    }
                )
        return events

    # --------------------------------------------------------------- outputs
    def _event(
        self,
        state: dict[str, Any],
        series: SeriesDefinition,
        customer_id: str,
        kind: str,
        rep: int,
        points: Decimal,
        moment: datetime,
        cause: str,
        *,
        ids: tuple,
        tier: tuple[int, SeriesTier] | None = None,
        reward: dict[str, Any] | None = None,
        final: bool = False,
        promote_to: str | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "series_event",
            "schema_version": 1,
            "event_id": series_event_id(series.series_id, customer_id, kind, *ids),
            "kind": kind,
            "customer_id": customer_id,
            "org_id": series.org_id,
            "series_id": series.series_id,
            "series_name": series.name,
            "repetition": rep,
            "repetitions": series.repetitions,
            "final": final,
            "tier": _tier_ref(*tier) if tier else None,
            "reward": reward,
            "previous_reward": None,
            "series_points": _fmt(points),
            "program_ids": _programs(state, series),
            "promote_to_program_id": promote_to,
            "occurred_at": utc_iso(moment),
            "cause": cause,
        }


def _tier(series: SeriesDefinition, tier_id: str) -> tuple[int, SeriesTier] | tuple[None, None]:
    for index, tier in enumerate(series.tiers, 1):
        if tier.tier_id == tier_id:
            return index, tier
    return None, None


def _tier_ref(index: int, tier: SeriesTier) -> dict[str, Any]:
    return {"tier_id": tier.tier_id, "name": tier.name, "index": index, "points": _fmt(tier.points)}


def _programs(state: dict[str, Any], series: SeriesDefinition) -> list[str]:
    return sorted(set(state.get("pg", ())) & set(series.program_ids))
