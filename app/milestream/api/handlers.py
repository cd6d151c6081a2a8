"""The API's request handlers (aiohttp requests in, JSON responses out).

Who answers what:

* a customer's progress and history: the worker owning the customer's partition; another worker
  forwards the request to it (once: a forwarded request that meets a worker not owning the
  partition either, during a rebalance, is a 503 with ``Retry-After``);
* a leaderboard: the worker asked, which gathers the head of every partition from every worker
  (``/internal/leaderboards/...``) and merges them; a partition nobody answered for is a 503;
* a customer's standings: the worker asked merges every worker's part of each board the customer
  is on; the owner of the customer's partition reads the boards and values, and answers them with
  its own parts in one request (``/internal/standings/...``) when asked by another worker;
* commands (enrolments, definitions, adjustments): validated here with the engine's own rules,
  then produced to the topic the workers read; 202 with where each record landed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..backfill.service import Backfills
from ..engine.registry import GROUP, Compiled, Registry
from ..pipeline import history, leaderboards, read_index
from ..pipeline.topology import Topology
from ..schemas.base import DEFAULT_ORG, Id, utc_iso
from ..schemas.codec import Rejected
from ..schemas.commands import MilestoneClone, MilestoneStatusChange
from ..schemas.definitions import MilestoneDefinition
from ..schemas.inputs import Enrolment, LedgerEntry
from ..settings import Settings
from ..state.keys import Customer
from ..worker.web import authorization_header
from . import read_models
from .access import Publisher, StateAccess
from .errors import ApiError, unavailable, validation_reasons
from .models import (
    AdjustmentAccepted,
    AdjustmentRequest,
    BackfillProgress,
    BoardPart,
    CloneRequest,
    CustomerLeaderboards,
    CustomerProgress,
    CustomerStanding,
    DefinitionAccepted,
    EnrolmentAccepted,
    EnrolmentRequest,
    Leaderboard,
    LeaderboardPart,
    MilestoneProgress,
    PartialEntry,
    ProducedEvent,
    RankedCustomer,
    StandingParts,
    StatusRequest,
)

FORWARDED = "X-Milestream-Forwarded"
MAX_TOP = 1000
MAX_RANKED = 10_000  # top * page
MAX_NEIGHBOURS = 10
BOARDS_CACHED = 256  # merged leaderboard pages kept (each for one commit interval)
# Leaderboard entries a partition's counts walk takes between two turns of the event loop (about 20 ms).
COUNTS_WALK_SLICE = 10_000
M = TypeVar("M", bound=BaseModel)
_ID: TypeAdapter[str] = TypeAdapter(Id)


def respond(model: BaseModel, status: int = 200) -> Any:
    from aiohttp import web

    return web.Response(
        body=orjson.dumps(model.model_dump(mode="json")), status=status, content_type="application/json"
    )


def check_id(value: str, what: str) -> str:
    try:
        return _ID.validate_python(value)
    except ValidationError as exc:
        raise ApiError(400, f"{what} {value[:140]!r} is not a valid id", validation_reasons(exc, what)) from None


def query_int(request: Any, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {text[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}, not {value}")
    return value


class Api:
    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        access: StateAccess,
        publisher: Publisher | None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.access = access
        self.publisher = publisher
        self.clock = clock
        self.backfills = Backfills(settings, topology)
        self._session: Any = None
        # Merged leaderboards, by (milestone, target, cycle, top, page): (when computed, the answer's body).
        self._boards: dict[tuple[str, str, int, int, int], tuple[float, asyncio.Future[bytes]]] = {}
        # Each partition's leaderboard bucket counts (leaderboards.py), mirrored from its store.
        self._counts: dict[int, leaderboards.CountsMirror] = {}

    @property
    def engine(self) -> Any:
        return self.topology.engine

    @property
    def registry(self) -> Registry:
        return self.topology.registry

    # ------------------------------------------------------------- plumbing
    async def _body(self, request: Any, model: type[M]) -> M:
        if request.content_length is not None and request.content_length > self.settings.api_max_body_bytes:
            raise ApiError(413, f"request body over {self.settings.api_max_body_bytes} bytes")
        raw = await request.read()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(422, f"the body must be a JSON object, not {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            reasons = validation_reasons(exc)
            raise ApiError(422, f"invalid {model.__name__}: {reasons[0]}", reasons) from None

    def _milestone(self, milestone_id: str) -> Compiled:
        compiled = self.registry.milestones.get(check_id(milestone_id, "milestone_id"))
        if compiled is None:
            raise ApiError(404, f"no milestone {milestone_id!r}")
        return compiled

    def _customer(self, request: Any) -> Customer:
        customer_id = check_id(request.match_info["customer_id"], "customer_id")
        org_id = check_id(request.query.get("org_id", DEFAULT_ORG), "org_id")
        return Customer(org_id, customer_id)

    def _http(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.api_forward_timeout_s)
            )
        return self._session

    async def close(self) -> None:
        await self.backfills.close()
        if self._session is not None:
            await self._session.close()

    async def _get_from(self, base_url: str, path_qs: str, request: Any) -> tuple[int, bytes, str]:
        import aiohttp

        headers = {FORWARDED: self.access.self_url(), **authorization_header(self.settings)}
        try:
            async with self._http().get(base_url + path_qs, headers=headers) as response:
                return response.status, await response.read(), response.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unavailable(f"the worker at {base_url} did not answer ({type(exc).__name__})") from None

    def _owner(self, request: Any, partition: int) -> str:
        """The worker to ask for a partition this worker does not own (a 503 if there is none, or the
        request was already forwarded here: the partition is moving)."""
        owner = self.access.owner_url(partition)
        if request.headers.get(FORWARDED) or owner is None or owner == self.access.self_url():
            raise unavailable(f"partition {partition} has no worker serving it right now (a rebalance); retry")
        return owner

    async def _forward(self, request: Any, partition: int) -> Any:
        """Answer with what the partition's owner answers."""
        from aiohttp import web

        status, body, content_type = await self._get_from(
            self._owner(request, partition), str(request.rel_url), request
        )
        return web.Response(body=body, status=status, content_type=content_type)

    # ------------------------------------------------------------- progress
    async def customer_milestones(self, request: Any) -> Any:
        customer = self._customer(request)
        partition, store = self._owned(customer)
        if store is None:
            return await self._forward(request, partition)
        now = self.clock()
        state = store.get(customer.state_key)
        milestones = read_models.customer_milestones(self.engine, state, customer.customer_id, customer.org_id, now)
        return respond(
            CustomerProgress(
                customer_id=customer.customer_id,
                org_id=customer.org_id,
                partition=partition,
                as_of=utc_iso(now),
                milestones=milestones,
            )
        )

    def _owned(self, customer: Customer) -> tuple[int, Any]:
        """The customer's partition, and its store if this worker owns it (else None: forward)."""
        partition = self.access.partition_for(customer.customer_id.encode())
        return partition, self.access.local_store(partition)

    def _in_milestone(self, store: Any, customer: Customer, compiled: Compiled) -> dict[str, Any]:
        definition = compiled.definition
        if definition.org_id != customer.org_id:
            raise ApiError(404, f"milestone {definition.milestone_id!r} is not of organisation {customer.org_id!r}")
        ms = (store.get(customer.state_key) or {}).get("m", {}).get(definition.milestone_id)
        if ms is None:
            raise ApiError(404, f"customer {customer.customer_id!r} is not in milestone {definition.milestone_id!r}")
        return ms

    async def customer_milestone(self, request: Any) -> Any:
        customer = self._customer(request)
        compiled = self._milestone(request.match_info["milestone_id"])
        partition, store = self._owned(customer)
        if store is None:
            return await self._forward(request, partition)
        ms = self._in_milestone(store, customer, compiled)
        progress: MilestoneProgress = read_models.milestone_progress(
            self.engine, compiled, ms, customer.customer_id, self.clock()
        )
        return respond(progress)

    async def customer_history(self, request: Any) -> Any:
        customer = self._customer(request)
        compiled = self._milestone(request.match_info["milestone_id"])
        partition, store = self._owned(customer)
        if store is None:
            return await self._forward(request, partition)
        self._in_milestone(store, customer, compiled)
        kept = history.read(store, customer, compiled.definition.milestone_id)
        return respond(
            read_models.milestone_history(
                customer.customer_id,
                customer.org_id,
                compiled.definition.milestone_id,
                kept,
                self.settings.history_per_cycle,
                self.settings.history_cycles,
            )
        )

    # ---------------------------------------------------------- leaderboards
    def _board(self, request: Any) -> tuple[Compiled, str, int]:
        compiled = self._milestone(request.match_info["milestone_id"])
        mid = compiled.definition.milestone_id
        if not compiled.settings.leaderboard:
            raise ApiError(404, f"milestone {mid!r} has no leaderboard (its 'leaderboard' setting is off)")
        targets = {t.target_id for t in compiled.targets} | (set() if compiled.single_target else {GROUP})
        target = request.query.get("target") or read_models.headline_target(compiled)
        if target not in targets:
            raise ApiError(404, f"milestone {mid!r} has no target {target[:140]!r} (its targets: {sorted(targets)})")
        count = compiled.definition.cycle_count() or 100
        cycle = query_int(request, "cycle", read_models.default_cycle(compiled, self.clock()), 1, count)
        return compiled, target, cycle

    def _bucket_counts(
        self, partition: int, store: Any, mid: str, target: str, cycle: int
    ) -> leaderboards.BucketCounts | None:
        """A partition's bucket counts of a board, from a mirror kept in step with the store's writes
        (leaderboards.CountsMirror): a rank then costs a walk of the customer's bucket."""
        return self._mirror(partition, store).counts(mid, target, cycle)

    def _mirror(self, partition: int, store: Any) -> leaderboards.CountsMirror:
        """The partition's counts mirror; a new one (its walk not begun) for a store it has not seen."""
        mirror = self._counts.get(partition)
        if mirror is None or mirror.store is not store:  # a partition assigned again: a new store
            mirror = self._counts[partition] = leaderboards.CountsMirror(store, walked=False)
        return mirror

    async def mirror_counts(self) -> None:
        """Count the leaderboard entries of each partition this worker has just been given (a walk
        of its entries, about two seconds per million: here, not on a rank request), in slices of
        ``COUNTS_WALK_SLICE`` entries with the event loop's other work between them, and forget
        those of partitions it no longer owns. Until a partition's walk ends, a rank walks the
        entries ahead of the customer there instead."""
        owned = set(self.access.local_partitions())
        for partition in [p for p in self._counts if p not in owned]:
            del self._counts[partition]
        for partition in sorted(owned):
            store = self.access.local_store(partition)
            if store is None:
                continue
            mirror = self._mirror(partition, store)
            while not mirror.walk(COUNTS_WALK_SLICE):
                await asyncio.sleep(0)
                if self.access.local_store(partition) is not store:
                    break  # revoked (or assigned again) meanwhile: the next call starts over

    def _local_part(
        self, mid: str, target: str, cycle: int, limit: int, around: tuple[str, Decimal] | None, neighbours: int
    ) -> LeaderboardPart:
        partitions, entries, above, below, ahead = [], [], [], [], 0
        key = "" if around is None else leaderboards.entry_key(mid, target, cycle, around[1], around[0])
        for partition in self.access.local_partitions():
            store = self.access.local_store(partition)
            if store is None:
                continue
            partitions.append(partition)
            if around is None:
                entries += leaderboards.head(store, mid, target, cycle, limit)
            else:
                counts = self._bucket_counts(partition, store, mid, target, cycle)
                found = leaderboards.around(store, mid, target, cycle, key, neighbours, counts)
                ahead += found.ahead
                above += found.above
                below += found.below
        entries.sort()
        return LeaderboardPart(
            partitions=partitions,
            entries=[_partial(e) for e in entries[:limit]],
            ahead=ahead,
            above=[_partial(e) for e in sorted(above)[-neighbours:]] if neighbours else [],
            below=[_partial(e) for e in sorted(below)[:neighbours]],
        )

    async def leaderboard_part(self, request: Any) -> Any:
        compiled, target, cycle = self._board(request)
        limit = query_int(request, "limit", 10, 0, MAX_RANKED)
        neighbours = query_int(request, "neighbours", 0, 0, MAX_NEIGHBOURS)
        around = None
        if "around" in request.query:
            customer_id = check_id(request.query["around"], "around")
            try:
                value = Decimal(request.query.get("value", ""))
            except InvalidOperation:
                raise ApiError(400, "value must be a decimal number") from None
            if not value.is_finite():
                raise ApiError(400, "value must be a decimal number")
            around = (customer_id, value)
        part = self._local_part(compiled.definition.milestone_id, target, cycle, limit, around, neighbours)
        return respond(part)

    async def _gather(
        self, request: Any, path_qs: str, local: LeaderboardPart, known: dict[str, LeaderboardPart] | None = None
    ) -> list[LeaderboardPart]:
        """Every worker's part of a board (``known``: parts already answered, by worker); a 503 unless
        every partition is in exactly one of them."""
        known = known or {}
        me = self.access.self_url()
        others = [url for url in self.access.worker_urls() if url != me and url not in known]
        answers = await asyncio.gather(*(self._get_from(url, path_qs, request) for url in others))
        parts = [local, *known.values()]
        for url, (status, body, _) in zip(others, answers):
            if status != 200:
                raise unavailable(f"the worker at {url} answered {status} for its part of the leaderboard")
            parts.append(LeaderboardPart.model_validate_json(body))
        covered = sorted(p for part in parts for p in part.partitions)
        if covered != list(range(self.access.partition_count())):
            raise unavailable("not every partition has a worker answering for it right now (a rebalance); retry")
        return parts

    async def leaderboard(self, request: Any) -> Any:
        compiled, target, cycle = self._board(request)
        top = query_int(request, "top", 10, 1, MAX_TOP)
        page = query_int(request, "page", 1, 1, MAX_RANKED)
        if top * page > MAX_RANKED:
            raise ApiError(400, f"top x page must be at most {MAX_RANKED}")
        from aiohttp import web

        key = (compiled.definition.milestone_id, target, cycle, top, page)
        now = time.monotonic()
        cached = self._boards.get(key)
        if cached is None or now - cached[0] >= self.settings.commit_interval_s or cached[1].cancelled():
            # One merge per board and page per commit interval, however many ask (boards change at
            # checkpoints, so an answer is at most one more interval behind); concurrent askers share it.
            if len(self._boards) >= BOARDS_CACHED:
                self._boards = {k: v for k, v in self._boards.items() if now - v[0] < self.settings.commit_interval_s}
            cached = (now, asyncio.ensure_future(self._merged_board(request, *key)))
            self._boards[key] = cached
        try:
            body = await asyncio.shield(cached[1])
        except BaseException:
            if self._boards.get(key) is cached:
                del self._boards[key]  # a failure is not kept: the next request tries again
            raise
        return web.Response(body=body, status=200, content_type="application/json")

    async def _merged_board(self, request: Any, mid: str, target: str, cycle: int, top: int, page: int) -> bytes:
        limit = top * page
        local = self._local_part(mid, target, cycle, limit, None, 0)
        path_qs = _internal_path(mid, target=target, cycle=cycle, limit=limit)
        parts = await self._gather(request, path_qs, local)
        merged = sorted((entry for part in parts for entry in part.entries), key=lambda e: e.key)
        start = (page - 1) * top
        entries = [
            RankedCustomer(rank=start + i + 1, customer_id=e.customer_id, value=e.value)
            for i, e in enumerate(merged[start : start + top])
        ]
        board = Leaderboard(milestone_id=mid, target_id=target, cycle=cycle, top=top, page=page, entries=entries)
        return orjson.dumps(board.model_dump(mode="json"))

    async def customer_leaderboards(self, request: Any) -> Any:
        """A rank needs the customer's values (their partition's owner has them) and every worker's
        part of each board: asked here, the owner answers both at once (``standings_part``), so a rank
        costs one request to each other worker whichever worker is asked."""
        customer = self._customer(request)
        neighbours = query_int(request, "neighbours", 2, 0, MAX_NEIGHBOURS)
        only = request.query.get("milestone_id")
        partition, store = self._owned(customer)
        known: dict[tuple[str, str, int], dict[str, LeaderboardPart]] = {}
        if store is not None:
            boards = self._customer_boards(store, customer, only)
        else:
            owner = self._owner(request, partition)
            status, body, content_type = await self._get_from(owner, _standings_path(request), request)
            if status != 200:
                from aiohttp import web

                return web.Response(body=body, status=status, content_type=content_type)
            answered = StandingParts.model_validate_json(body)
            boards = [(b.milestone_id, b.target_id, b.cycle, Decimal(b.value)) for b in answered.boards]
            known = {(b.milestone_id, b.target_id, b.cycle): {owner: b.part} for b in answered.boards}
        standings = await asyncio.gather(
            *(
                self._standing(request, customer, mid, t, c, v, neighbours, known.get((mid, t, c)))
                for mid, t, c, v in sorted(boards)
            )
        )
        return respond(
            CustomerLeaderboards(customer_id=customer.customer_id, org_id=customer.org_id, standings=list(standings))
        )

    def _customer_boards(self, store: Any, customer: Customer, only: str | None) -> list[tuple[str, str, int, Decimal]]:
        """(milestone, target, cycle, value) of every leaderboard the customer is on (or ``only``'s)."""
        indexed = read_index.indexed(store.get(customer.state_key))
        boards = []
        for mid, entry in sorted(indexed.items()):
            compiled = self.registry.milestones.get(mid)
            if not entry.get("l") or compiled is None or not compiled.settings.leaderboard or only not in (None, mid):
                continue
            for part in ("o", "x"):
                for cycle, values in entry.get(part, {}).items():
                    boards += [(mid, target, int(cycle), Decimal(value)) for target, value in values.items()]
        return sorted(boards)

    async def standings_part(self, request: Any) -> Any:
        """The owner's side of a rank asked elsewhere (customer_leaderboards)."""
        customer = self._customer(request)
        neighbours = query_int(request, "neighbours", 2, 0, MAX_NEIGHBOURS)
        partition, store = self._owned(customer)
        if store is None:
            return await self._forward(request, partition)
        boards = [
            BoardPart(
                milestone_id=mid,
                target_id=target,
                cycle=cycle,
                value=format(value, "f"),
                part=self._local_part(mid, target, cycle, 0, (customer.customer_id, value), neighbours),
            )
            for mid, target, cycle, value in self._customer_boards(store, customer, request.query.get("milestone_id"))
        ]
        return respond(StandingParts(boards=boards))

    async def _standing(
        self,
        request: Any,
        customer: Customer,
        mid: str,
        target: str,
        cycle: int,
        value: Decimal,
        neighbours: int,
        known: dict[str, LeaderboardPart] | None = None,
    ) -> CustomerStanding:
        around = (customer.customer_id, value)
        local = self._local_part(mid, target, cycle, 0, around, neighbours)
        path_qs = _internal_path(
            mid,
            target=target,
            cycle=cycle,
            limit=0,
            around=customer.customer_id,
            value=format(value, "f"),
            neighbours=neighbours,
        )
        parts = await self._gather(request, path_qs, local, known)
        rank = sum(part.ahead for part in parts) + 1
        above = (
            sorted((e for part in parts for e in part.above), key=lambda e: e.key)[-neighbours:] if neighbours else []
        )
        below = sorted((e for part in parts for e in part.below), key=lambda e: e.key)[:neighbours]
        return CustomerStanding(
            milestone_id=mid,
            target_id=target,
            cycle=cycle,
            rank=rank,
            value=leaderboards.value_text(value.normalize() if value else Decimal(0)),
            above=[
                RankedCustomer(rank=rank - len(above) + i, customer_id=e.customer_id, value=e.value)
                for i, e in enumerate(above)
            ],
            below=[
                RankedCustomer(rank=rank + 1 + i, customer_id=e.customer_id, value=e.value) for i, e in enumerate(below)
            ],
        )

    # -------------------------------------------------------------- commands
    def _publisher(self) -> Publisher:
        if self.publisher is None:
            raise unavailable("this worker cannot produce records")
        return self.publisher

    async def enrol(self, request: Any) -> Any:
        compiled = self._milestone(request.match_info["milestone_id"])
        body = await self._body(request, EnrolmentRequest)
        entries = ([body.customer] if body.customer else []) + body.customers
        if not entries:
            raise ApiError(422, "give a customer or a list of customers")
        definition = compiled.definition
        mid = definition.milestone_id
        when = body.event_time or self.clock()
        targets = {t.target_id: t for t in compiled.targets}
        events, reasons = [], []
        for n, entry in enumerate(entries):
            where = f"customers[{n}] ({entry.customer_id})"
            named = [o.target_id for o in entry.targets] + list(entry.initial_balance)
            unknown = sorted({t for t in named if t not in targets})
            if unknown:
                reasons.append(f"{where}: milestone {mid!r} has no target {', '.join(map(repr, unknown))}")
                continue
            for override in entry.targets:
                subs = {s.name for s in targets[override.target_id].sub_targets}
                for name in override.sub_targets:
                    if name not in subs:
                        reasons.append(f"{where}: target {override.target_id!r} has no sub-target {name!r}")
            fields = entry.model_dump(mode="json", exclude_defaults=True, exclude={"event_id"})
            event_id = (
                entry.event_id
                or "api:" + hashlib.sha256(orjson.dumps([mid, fields], option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
            )
            event = {
                **fields,
                "type": "enrolment",
                "schema_version": 1,
                "event_id": event_id,
                "org_id": definition.org_id,
                "event_time": utc_iso(when),
                "milestone_id": mid,
            }
            try:
                model = Enrolment.model_validate(event)
                self.engine._check_enrolment(model)
            except ValidationError as exc:
                reasons += validation_reasons(exc, where)
                continue
            except Rejected as exc:
                reasons.append(f"{where}: {exc.detail}")
                continue
            events.append(event)
        if reasons:
            status = 404 if len(entries) == 1 and "has no target" in reasons[0] else 422
            raise ApiError(status, reasons[0] if len(reasons) == 1 else f"{len(reasons)} problems", reasons)
        publisher = self._publisher()
        topic = self.topology.topics["enrolments"].name
        produced = []
        for event in events:
            sent = await publisher.send(topic, event["customer_id"].encode(), orjson.dumps(event))
            produced.append(
                ProducedEvent(
                    event_id=event["event_id"],
                    customer_id=event["customer_id"],
                    topic=sent.topic,
                    partition=sent.partition,
                    offset=sent.offset,
                )
            )
        return respond(EnrolmentAccepted(milestone_id=mid, events=produced), 202)

    def _trial(self, item: BaseModel) -> None:
        """Apply a definitions item to a copy of the registry: the engine's own checks, nothing kept."""
        from ..engine.lifecycle import apply_command

        trial = Registry(org_settings=dict(self.registry.org_settings), milestones=dict(self.registry.milestones))
        try:
            apply_command(trial, item, self.clock())
        except Rejected as exc:
            raise ApiError(422, exc.detail, [exc.detail]) from None

    async def _publish_definition(self, item: BaseModel, key: str, *, backfill: bool = False) -> Any:
        data = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        where = await self._publisher().send(self.topology.definitions_topic, key.encode(), orjson.dumps(data))
        follow = None
        if backfill:
            self.backfills.start(key, item)
            follow = f"/milestones/{key}/backfill"
        accepted = DefinitionAccepted(
            milestone_id=key, topic=where.topic, partition=where.partition, offset=where.offset, backfill=follow
        )
        return respond(accepted, 202)

    async def backfill_status(self, request: Any) -> Any:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        from ..kafka_client import client_options

        mid = check_id(request.match_info["milestone_id"], "milestone_id")
        if not self.backfills.running(mid):  # a run this worker just started may precede its definition here
            self._milestone(mid)
        status = self.backfills.current(mid)
        if status is None:
            consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(self.settings))
            try:
                await consumer.start()
                try:
                    status = await self.backfills.status(mid, consumer)
                finally:
                    await consumer.stop()
            except (KafkaError, TimeoutError) as exc:  # the broker, not the request: ask again later
                raise unavailable(f"the backfill status cannot be read from the broker now ({exc})") from exc
        progress = BackfillProgress(
            milestone_id=mid,
            status=status,
            running_here=self.backfills.running(mid),
            error=self.backfills.errors.get(mid),
        )
        return respond(progress)

    async def put_definition(self, request: Any) -> Any:
        mid = check_id(request.match_info["milestone_id"], "milestone_id")
        if request.content_length is not None and request.content_length > self.settings.api_max_body_bytes:
            raise ApiError(413, f"request body over {self.settings.api_max_body_bytes} bytes")
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(422, "the body must be a milestone definition (a JSON object)")
        data.setdefault("milestone_id", mid)
        data.setdefault("type", "milestone_definition")
        if data["milestone_id"] != mid:
            raise ApiError(422, f"milestone_id {data['milestone_id']!r} is not the path's {mid!r}")
        try:
            definition = MilestoneDefinition.model_validate(data)
        except ValidationError as exc:
            reasons = validation_reasons(exc)
            raise ApiError(422, f"invalid definition: {reasons[0]}", reasons) from None
        backfill = request.query.get("backfill", "false").lower()
        if backfill not in ("true", "false", "1", "0"):
            raise ApiError(400, f"backfill must be true or false, not {backfill!r}")
        if backfill in ("true", "1"):
            # Live records wait for the run (docs/backfill.md): none is counted before the past is.
            definition = definition.model_copy(update={"backfill": True})
        self._trial(definition)
        return await self._publish_definition(definition, mid, backfill=backfill in ("true", "1"))

    async def set_status(self, request: Any) -> Any:
        compiled = self._milestone(request.match_info["milestone_id"])
        body = await self._body(request, StatusRequest)
        item = MilestoneStatusChange(milestone_id=compiled.definition.milestone_id, active=body.active)
        self._trial(item)
        return await self._publish_definition(item, item.milestone_id)

    async def clone(self, request: Any) -> Any:
        compiled = self._milestone(request.match_info["milestone_id"])
        body = await self._body(request, CloneRequest)
        item = MilestoneClone(
            milestone_id=body.milestone_id,
            source_milestone_id=compiled.definition.milestone_id,
            name=body.name,
            description=body.description,
            enrolment=body.enrolment,
            changes=body.changes,
        )
        self._trial(item)
        return await self._publish_definition(item, item.milestone_id)

    async def adjust(self, request: Any) -> Any:
        customer_id = check_id(request.match_info["customer_id"], "customer_id")
        body = await self._body(request, AdjustmentRequest)
        entry_id = body.entry_id or f"adjustment:{uuid.uuid4().hex}"
        event = {
            "type": "ledger_entry",
            "schema_version": 1,
            "event_id": entry_id,
            "entry_id": entry_id,
            "customer_id": customer_id,
            "org_id": body.org_id,
            "event_time": utc_iso(body.event_time or self.clock()),
            "currency": body.currency,
            "kind": body.kind.value,
            "amount": body.amount,
            "source": "adjustment",
            "reason": body.reason,
            "actor": body.actor,
        }
        try:
            LedgerEntry.model_validate(event)
        except ValidationError as exc:
            reasons = validation_reasons(exc)
            raise ApiError(422, f"invalid adjustment: {reasons[0]}", reasons) from None
        topic = self.topology.topics["ledger"].name
        where = await self._publisher().send(topic, customer_id.encode(), orjson.dumps(event))
        return respond(
            AdjustmentAccepted(
                event_id=entry_id,
                customer_id=customer_id,
                topic=where.topic,
                partition=where.partition,
                offset=where.offset,
            ),
            202,
        )


def _partial(entry: leaderboards.Entry) -> PartialEntry:
    return PartialEntry(key=entry.key, customer_id=entry.customer_id, value=leaderboards.value_text(entry.value))


def _standings_path(request: Any) -> str:
    """The owner's ``standings_part`` for the customer of a ``customer_leaderboards`` request."""
    customer_id = quote(request.match_info["customer_id"], safe="")
    query = {k: request.query[k] for k in ("org_id", "neighbours", "milestone_id") if k in request.query}
    return f"/internal/standings/{customer_id}" + (f"?{urlencode(query)}" if query else "")


def _internal_path(milestone_id: str, **query: Any) -> str:
    return f"/internal/leaderboards/{quote(milestone_id, safe='')}?{urlencode(query)}"
