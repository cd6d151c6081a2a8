"""``milestream replay``: reprocess every input into a second deployment beside the live one (blue/green).

The live deployment ("blue") is the one the settings in effect describe. A replay ("green") is a
deployment with its own app id (consumer group, changelog) and its own output prefix
(``MILESTREAM_OUTPUT_TOPIC_PREFIX``): it reads the shared input topics from the earliest retained
offset and writes only its own topics (topics.written_topics), so blue and its consumers see nothing
of it until the switch.

* ``start``: check the names, create green's topics, print green's environment;
* ``status``: green's lag on every shared input topic, beside blue's;
* ``compare``: blue's and green's promotions, event by event;
* ``switch``: with both stopped, check that green can take blue's place and point green's consumer
  group past blue's internal topics, then print green's environment as the live deployment.

docs/reprocessing.md tells the whole procedure and why each check is there.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import UsageError
from .settings import Settings
from .topics import TopicSpec, apply_topics, load_topics, owned_topics, topics_to_apply

# Kafka's rule for topic names.
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
# The cause of what the clock set off (a cycle close): its moment may be the close tick's.
CLOCK_CAUSE = "cycle-end"
EXAMPLES = 3


def green_settings(live: Settings, app_id: str, output_prefix: str) -> Settings:
    """Green's settings: blue's, with its own app id and output prefix."""
    return live.model_copy(update={"app_id": app_id, "output_topic_prefix": output_prefix})


def check_output_prefix(live: Settings, green: Settings) -> None:
    if green.output_prefix in (live.output_prefix, live.topic_prefix):
        raise UsageError(f"--output-prefix {green.output_prefix!r} is the live deployment's: give the replay's")


def check_green(live: Settings, green: Settings) -> None:
    """Refuse a green that would share anything with blue: its group, its changelog, its outputs."""
    if not green.app_id.strip():
        raise UsageError("--app-id must not be empty")
    if green.app_id == live.app_id:
        raise UsageError(
            f"--app-id {green.app_id} is the live deployment's (MILESTREAM_APP_ID): a replay needs a new one"
        )
    check_output_prefix(live, green)
    if not owned_topics(load_topics(green)):  # a topics file older than the output prefix
        raise UsageError(
            f"{live.topics_file or 'topics.yaml'} marks no topic `owned: true`: green would write on blue's"
        )
    green_topics = owned_topics(topics_to_apply(green))
    for spec in green_topics.values():
        if not TOPIC_NAME.fullmatch(spec.name):
            raise UsageError(f"{spec.name!r} is no valid topic name (letters, digits, '.', '_', '-'; at most 249)")
    blue_names = {spec.name for spec in topics_to_apply(live).values()}
    shared = sorted(blue_names & {spec.name for spec in green_topics.values()})
    if shared:
        raise UsageError(f"green would write on blue's topic {shared[0]}: choose another --app-id or --output-prefix")


# ------------------------------------------------------------------ comparing
def differing_fields(blue: dict[str, Any], green: dict[str, Any]) -> list[str]:
    """The fields in which two records of one event differ, but for those that may legitimately:
    ``cause``, the position of the record that triggered the event (provenance, which a promotion
    service does not act on; what the event says is in the other fields), and the ``occurred_at``
    of what the clock caused (an enrolment by performance at a cycle close takes the close tick's
    moment, which is each deployment's own)."""
    ignored = {"cause"}
    if CLOCK_CAUSE in (blue.get("cause"), green.get("cause")):
        ignored.add("occurred_at")
    return sorted(k for k in blue.keys() | green.keys() if k not in ignored and blue.get(k) != green.get(k))


def events_by_id(values: Iterable[bytes | None]) -> tuple[dict[str, dict[str, Any]], int, int]:
    """Events by ``event_id``, the first record of each (a repeat after a crash has the same id);
    with the number of records and of those that are not events (no JSON object with an id)."""
    events: dict[str, dict[str, Any]] = {}
    records = unreadable = 0
    for value in values:
        records += 1
        try:
            event = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
            unreadable += 1
            continue
        events.setdefault(event["event_id"], event)
    return events, records, unreadable


@dataclass
class Comparison:
    blue: dict[str, dict[str, Any]]
    green: dict[str, dict[str, Any]]
    missing: list[str] = field(default_factory=list)  # event ids blue has and green does not
    extra: list[str] = field(default_factory=list)  # event ids green has and blue does not
    different: dict[str, list[str]] = field(default_factory=dict)  # event id -> the fields that differ

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def counts(self) -> str:
        return (
            f"{len(self.missing)} missing in green, {len(self.extra)} extra in green, {len(self.different)} different"
        )


def compare_events(blue: dict[str, dict[str, Any]], green: dict[str, dict[str, Any]]) -> Comparison:
    comparison = Comparison(blue, green)
    comparison.missing = sorted(blue.keys() - green.keys())
    comparison.extra = sorted(green.keys() - blue.keys())
    for event_id in sorted(blue.keys() & green.keys()):
        fields = differing_fields(blue[event_id], green[event_id])
        if fields:
            comparison.different[event_id] = fields
    return comparison


def describe_event(event: dict[str, Any]) -> str:
    """An event in a few words: what, whom, which milestone (or series) and cycle."""
    what = event.get("kind") or event.get("type") or "?"
    of = event.get("milestone_id") or event.get("series_id") or "?"
    cycle = (event.get("cycle") or {}).get("index") if isinstance(event.get("cycle"), dict) else None
    return f"{what} {event.get('customer_id', '?')} {of}" + (f" #{cycle}" if cycle is not None else "")


def report(comparison: Comparison, examples: int = EXAMPLES) -> list[str]:
    """The lines of a summary: the counts, then a few examples of each difference."""
    lines = []
    for title, ids in (("missing in green", comparison.missing), ("extra in green", comparison.extra)):
        side = comparison.blue if title.startswith("missing") else comparison.green
        lines.append(f"{title}: {len(ids)}")
        lines += [f"  {i} ({describe_event(side[i])})" for i in ids[:examples]]
    lines.append(f"different: {len(comparison.different)}")
    for event_id, fields in list(comparison.different.items())[:examples]:
        blue, green = comparison.blue[event_id], comparison.green[event_id]
        # Lists (the targets) are named only: their values would drown the line.
        listed = [f for f in fields if isinstance(blue.get(f), list) or isinstance(green.get(f), list)]
        shown = ", ".join(f"{f} {blue.get(f)!r} -> {green.get(f)!r}" for f in fields if f not in listed)
        lines.append(
            f"  {event_id} ({describe_event(blue)}): {shown}{'; ' if shown and listed else ''}{', '.join(listed)}"
        )
    return lines


# -------------------------------------------------------------------- Kafka
@dataclass
class Cluster:
    """What the replay commands ask the brokers: topics, offsets, consumer groups."""

    settings: Settings
    admin: Any
    consumer: Any  # of no group, read_committed: end offsets are what a consumer can reach

    async def topics(self) -> set[str]:
        return set(await self.consumer.topics())

    async def partitions(self, topic: str) -> list[Any]:
        from aiokafka import TopicPartition

        # Asked of every topic first: asking for one by name creates it on a broker that auto-creates topics.
        if topic not in await self.topics():
            raise UsageError(f"topic {topic} does not exist on {self.settings.kafka_bootstrap_servers}")
        (described,) = await self.admin.describe_topics([topic])
        return [
            TopicPartition(topic, p["partition"]) for p in sorted(described["partitions"], key=lambda p: p["partition"])
        ]

    async def ends(self, tps: list[Any]) -> dict[Any, int]:
        return dict(await self.consumer.end_offsets(tps)) if tps else {}

    async def beginnings(self, tps: list[Any]) -> dict[Any, int]:
        return dict(await self.consumer.beginning_offsets(tps)) if tps else {}

    async def groups(self) -> set[str]:
        return {group[0] for group in await self.admin.list_consumer_groups()}

    async def committed(self, group: str) -> dict[Any, int]:
        """The group's committed offsets (none for a partition it never committed)."""
        offsets = await self.admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def members(self, group: str) -> int:
        """How many workers are in the group (a stopped one stays until its session times out)."""
        (response,) = await self.admin.describe_consumer_groups([group])
        return sum(len(described[5]) for described in response.groups)

    async def values(self, topic: str) -> list[bytes | None]:
        """Every committed record's value, from the earliest retained offset to the current end;
        gives up when nothing arrives for the command timeout."""
        tps = await self.partitions(topic)
        ends = await self.ends(tps)
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        values: list[bytes | None] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        progress = loop.time()
        while remaining:
            for messages in (await self.consumer.getmany(*remaining, timeout_ms=500)).values():
                values += [m.value for m in messages]
                progress = loop.time()
            for tp in list(remaining):
                if await self.consumer.position(tp) >= ends[tp]:  # past transaction markers too
                    remaining.discard(tp)
            if remaining and loop.time() - progress > self.settings.command_timeout_s:
                raise TimeoutError
        return values


@asynccontextmanager
async def cluster(settings: Settings) -> AsyncIterator[Cluster]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from .cli import command_client_options, started
    from .kafka_client import start_client

    admin = AIOKafkaAdminClient(**command_client_options(settings), client_id="milestream-replay")
    try:
        await asyncio.wait_for(start_client(admin, settings), settings.command_timeout_s)
        consumer = await started(
            AIOKafkaConsumer(
                enable_auto_commit=False, isolation_level="read_committed", **command_client_options(settings)
            ),
            settings,
        )
        try:
            yield Cluster(settings, admin, consumer)
        finally:
            await consumer.stop()
    finally:
        await admin.close()


def shared_inputs(settings: Settings) -> list[tuple[TopicSpec, str]]:
    """The shared input topics, each with the consumer group of ``settings``' deployment that reads it
    (the definitions topic's outcomes are published by the Faust app's group, worker/app.py)."""
    return [
        (spec, settings.definitions_group if spec.logical == "definitions" else settings.app_id)
        for spec in load_topics(settings).values()
        if not spec.owned
    ]


# -------------------------------------------------------------------- start
async def start(live: Settings, green: Settings) -> list[str]:
    """Check that green starts from nothing and blue's inputs exist; create green's topics."""
    specs = owned_topics(topics_to_apply(green))
    async with cluster(live) as kafka:
        existing = await kafka.topics()
        for spec, _ in shared_inputs(live):
            if spec.name not in existing:
                raise UsageError(
                    f"input topic {spec.name} does not exist on {live.kafka_bootstrap_servers}: "
                    "run the replay commands with the live deployment's settings"
                )
        if green.app_id in await kafka.groups():
            raise UsageError(f"consumer group {green.app_id} exists already: a replay needs an app id never used")
        for spec in specs.values():
            if spec.name in existing:
                tps = await kafka.partitions(spec.name)
                if any((await kafka.ends(tps)).values()):
                    raise UsageError(f"topic {spec.name} holds records already: a replay starts from empty topics")
    return await asyncio.wait_for(apply_topics(green, specs), live.command_timeout_s)


def green_environment(live: Settings, green: Settings) -> list[str]:
    """The variables green's workers need besides blue's connection settings, as shell lines."""
    lines = [
        f"MILESTREAM_APP_ID={green.app_id}",
        f"MILESTREAM_TOPIC_PREFIX={live.topic_prefix}",
        f"MILESTREAM_OUTPUT_TOPIC_PREFIX={green.output_topic_prefix}",
        f"KAFKA_BOOTSTRAP_SERVERS={live.kafka_bootstrap_servers}",
    ]
    if live.topics_file:
        lines.append(f"MILESTREAM_TOPICS_FILE={live.topics_file}")
    return lines


# ------------------------------------------------------------------- status
@dataclass(frozen=True)
class Positions:
    """Where blue's and green's groups stand on a shared input topic, per partition: the committed
    offset, else the earliest (a group starts there); None for a group that never committed."""

    spec: TopicSpec
    ends: dict[Any, int]
    blue: dict[Any, int] | None
    green: dict[Any, int] | None

    def lag(self, at: dict[Any, int] | None) -> int | None:
        return None if at is None else sum(max(0, end - at[tp]) for tp, end in self.ends.items())


def _standing(committed: dict[Any, int] | None, beginnings: dict[Any, int]) -> dict[Any, int] | None:
    return None if committed is None else {tp: committed.get(tp, start) for tp, start in beginnings.items()}


async def positions(kafka: Cluster, live: Settings, green: Settings) -> list[Positions]:
    groups = await kafka.groups()
    if green.app_id not in groups:
        raise UsageError(
            f"no consumer group {green.app_id} on {live.kafka_bootstrap_servers}: "
            "start green's workers first (`milestream replay start` prints their environment)"
        )
    committed = {group: await kafka.committed(group) for group in _groups(live, green) if group in groups}
    found = []
    for (spec, blue_group), (_, green_group) in zip(shared_inputs(live), shared_inputs(green), strict=True):
        tps = await kafka.partitions(spec.name)
        beginnings = await kafka.beginnings(tps)
        blue, green_at = (_standing(committed.get(group), beginnings) for group in (blue_group, green_group))
        found.append(Positions(spec, await kafka.ends(tps), blue, green_at))
    return found


@dataclass(frozen=True)
class Lag:
    topic: str
    green: int | None  # None: the group has never read it
    blue: int | None


async def lags(live: Settings, green: Settings) -> list[Lag]:
    """Per shared input topic, the records green's (and blue's) group has not read yet."""
    async with cluster(live) as kafka:
        return [Lag(p.spec.name, p.lag(p.green), p.lag(p.blue)) for p in await positions(kafka, live, green)]


def _groups(live: Settings, green: Settings) -> list[str]:
    return [live.app_id, live.definitions_group, green.app_id, green.definitions_group]


def caught_up(rows: list[Lag]) -> bool:
    return all(row.green == 0 for row in rows)


def _shown(lag: int | None) -> str:
    return "-" if lag is None else f"{lag:,}"


def lag_table(rows: list[Lag]) -> list[str]:
    width = max([len("input topic"), *(len(row.topic) for row in rows)])
    return [f"{'input topic':<{width}}  {'green lag':>10}  {'blue lag':>10}"] + [
        f"{row.topic:<{width}}  {_shown(row.green):>10}  {_shown(row.blue):>10}" for row in rows
    ]


# ------------------------------------------------------------------- switch
async def switch(live: Settings, green: Settings, dry_run: bool) -> list[str]:
    """Check that green may take blue's place, then (unless ``dry_run``) commit green's group at the
    end of blue's internal topics; the lines say what was done."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata

    from .cli import command_client_options, started

    async with cluster(live) as kafka:
        groups = await kafka.groups()
        for group in _groups(live, green):
            if group in groups and await kafka.members(group):
                raise UsageError(
                    f"consumer group {group} still has members: stop green's workers, then blue's, and switch (a "
                    f"stopped worker leaves its group after MILESTREAM_SESSION_TIMEOUT, {live.session_timeout_s:g} s)"
                )
        for p in await positions(kafka, live, green):
            blue, green_at = p.blue or {}, p.green or {}
            for tp in p.ends:
                # Every input green processed must have been processed by blue: green's outputs of it are
                # on green's topics only, and green resumes after it.
                if green_at.get(tp, 0) > blue.get(tp, 0):
                    raise UsageError(
                        f"blue is behind green on {tp.topic}/{tp.partition} (blue at {blue.get(tp)}, green at "
                        f"{green_at[tp]}): start blue's workers until `replay status` shows blue's lag at 0, stop "
                        "them, and switch"
                    )
                # Green publishes what definitions records produce from its own position on.
                if p.spec.logical == "definitions" and green_at.get(tp, 0) < blue.get(tp, 0):
                    raise UsageError(
                        f"green is behind blue on {tp.topic}/{tp.partition} (green at {green_at.get(tp)}, blue at "
                        f"{blue[tp]}): start green's workers until `replay status` says caught up, stop them, and "
                        "switch"
                    )
        committed = await kafka.committed(green.app_id)
        # Green's own series commands, all applied: from the switch on it skips blue's copies of them.
        green_specs, live_specs = load_topics(green), load_topics(live)
        commands = await kafka.partitions(green_specs["series-commands"].name)
        unread = [tp for tp, end in (await kafka.ends(commands)).items() if committed.get(tp, 0) < end]
        if unread:
            raise UsageError(
                f"green has not applied its series commands on {unread[0].topic}: start green's workers until "
                "`replay status` says caught up, stop them, and switch"
            )
        internal = [await kafka.partitions(live_specs[logical].name) for logical in ("close-ticks", "series-commands")]
        ends = await kafka.ends([tp for tps in internal for tp in tps])
    lines = [
        f"{'would commit' if dry_run else 'committed'} {green.app_id} at the end of {live_specs[n].name}"
        for n in ("close-ticks", "series-commands")
    ]
    if not dry_run:
        consumer = await started(
            AIOKafkaConsumer(group_id=green.app_id, enable_auto_commit=False, **command_client_options(live)), live
        )
        try:
            consumer.assign(list(ends))
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
        finally:
            await consumer.stop()
    return lines


# ---------------------------------------------------------------------- CLI
def _green(args: argparse.Namespace, settings: Settings) -> Settings:
    """Green's settings from the command line (status needs no output prefix: it reads shared topics only)."""
    prefix = getattr(args, "output_prefix", None)
    green = green_settings(settings, args.app_id, prefix or "")
    if prefix is not None:
        check_green(settings, green)
    elif args.app_id == settings.app_id:
        raise UsageError(f"--app-id {args.app_id} is the live deployment's (MILESTREAM_APP_ID): give the replay's")
    return green


def _start(args: argparse.Namespace, settings: Settings) -> int:
    from .cli import run_against_broker

    green = _green(args, settings)
    created = run_against_broker(settings, "replay start", lambda: start(settings, green))
    print("# green's topics:")
    for line in created:
        print(f"#   {line}")
    print("# green's workers: blue's environment (its connection settings too), with")
    for line in green_environment(settings, green):
        print(line)
    # Never blue's folder: a store there holds blue's state.
    print(f"MILESTREAM_DATA_DIR={args.data_dir or settings.data_dir.rstrip('/') + '-' + green.app_id}")
    print("# and, on blue's hosts, another MILESTREAM_WEB_PORT")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from .cli import run_against_broker

    green = _green(args, settings)
    deadline = time.monotonic() + (args.wait or 0)
    while True:
        rows = run_against_broker(settings, "replay status", lambda: lags(settings, green))
        if caught_up(rows) or time.monotonic() >= deadline:
            break
        time.sleep(1)
    for line in lag_table(rows):
        print(line)
    if caught_up(rows):
        print(f"caught up: {green.app_id} has read every input topic to its end")
        return 0
    print(f"behind: {green.app_id} has {sum(row.green or 0 for row in rows):,} input records to go")
    return 1


def _compare(args: argparse.Namespace, settings: Settings) -> int:
    from .cli import run_against_broker

    green = green_settings(settings, "-", args.output_prefix)  # only its topics' names matter here
    check_output_prefix(settings, green)
    topics = {"blue ": load_topics(settings)["promotions"].name, "green": load_topics(green)["promotions"].name}

    async def read() -> list[list[bytes | None]]:
        async with cluster(settings) as kafka:
            return [await kafka.values(name) for name in topics.values()]

    read_events = {}
    for (side, name), values in zip(topics.items(), run_against_broker(settings, "replay compare", read), strict=True):
        events, records, unreadable = events_by_id(values)
        read_events[side] = events
        left_out = f" ({unreadable:,} without an event id, left out)" if unreadable else ""
        print(f"{side} {len(events):,} events in {records:,} records of {name}{left_out}")
    comparison = compare_events(read_events["blue "], read_events["green"])
    if comparison.equal:
        print(f"equal: {len(comparison.blue):,} events (ignoring cause, and occurred_at of what a cycle end caused)")
        return 0
    for line in report(comparison):
        print(line)
    print(f"milestream: green differs from blue: {comparison.counts()}", file=sys.stderr)
    return 1


def _switch(args: argparse.Namespace, settings: Settings) -> int:
    from .cli import run_against_broker

    green = _green(args, settings)
    done = run_against_broker(settings, "replay switch", lambda: switch(settings, green, args.dry_run))
    for line in done:
        print(line)
    print(f"# {'after the switch, ' if args.dry_run else ''}green is the live deployment: start its workers with")
    for line in green_environment(settings, green.model_copy(update={"output_topic_prefix": ""})):
        print(line)
    print(
        f"# and the data folders green used. Blue's group {settings.app_id}, its changelog and green's "
        f"{green.output_prefix}* topics are no longer used (Milestream deletes nothing)."
    )
    return 0


def add_replay_parser(sub: Any) -> None:
    replay = sub.add_parser("replay", help="reprocess every input into a new deployment, compare, switch (blue/green)")
    actions = replay.add_subparsers(dest="action", required=True)

    def green_options(parser: argparse.ArgumentParser, prefix: bool) -> None:
        parser.add_argument("--app-id", required=True, help="green's app id (consumer group, changelog)")
        if prefix:
            parser.add_argument("--output-prefix", required=True, help="prefix of green's own topics")

    begin = actions.add_parser("start", help="create green's topics and print its workers' environment")
    green_options(begin, prefix=True)
    begin.add_argument("--data-dir", default=None, help="green's data folder (default: blue's with -<app id>)")
    begin.set_defaults(func=_start)

    status = actions.add_parser("status", help="green's lag on every input topic, beside blue's")
    green_options(status, prefix=False)
    status.add_argument("--wait", type=float, default=0, help="seconds to wait for green to catch up")
    status.set_defaults(func=_status)

    compare = actions.add_parser("compare", help="blue's and green's promotions, event by event")
    compare.add_argument("--output-prefix", required=True, help="prefix of green's own topics")
    compare.set_defaults(func=_compare)

    swap = actions.add_parser("switch", help="with blue and green stopped: make green the live deployment")
    green_options(swap, prefix=True)
    swap.add_argument("--dry-run", action="store_true", help="check only, change nothing")
    swap.set_defaults(func=_switch)
