"""The ``milestream`` command.

A user's mistake (a file that cannot be read, a bad option or setting, a broker
that does not answer) is reported as one line on stderr with exit status 2,
never a traceback. Commands that talk to Kafka give up after
``MILESTREAM_COMMAND_TIMEOUT`` seconds without an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from .errors import UsageError, read_text_file
from .settings import Settings, describe_settings_error

if TYPE_CHECKING:
    from .engine.registry import Compiled
    from .pipeline.topology import Topology

T = TypeVar("T")
MAX_ERROR_CHARS = 500


class OneLineParser(argparse.ArgumentParser):
    """Reports a bad command line in one line, like every other user mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message}\n")


def run_against_broker(settings: Settings, what: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` (Kafka I/O); a broker that fails or does not answer in time is a ``UsageError``."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from .kafka_client import KafkaConnectionSettingsError, KafkaUnreachable

    servers, timeout = settings.kafka_bootstrap_servers, settings.command_timeout_s
    try:
        return asyncio.run(work())
    except (KafkaUnreachable, KafkaConnectionSettingsError) as exc:
        raise UsageError(f"{what}: {exc}") from None
    except TimeoutError:
        raise UsageError(f"{what}: no answer from the Kafka broker at {servers} within {timeout:g} s") from None
    except KafkaConnectionError:
        raise UsageError(f"{what}: cannot connect to the Kafka broker at {servers}") from None
    except KafkaError as exc:
        raise UsageError(f"{what}: the Kafka broker at {servers} failed: {exc}") from None


async def started(client: Any, settings: Settings) -> Any:
    """``client.start()`` within the command timeout; the client is closed if it does not start."""
    from .kafka_client import start_client

    try:
        await asyncio.wait_for(start_client(client, settings), settings.command_timeout_s)
    except BaseException:
        try:
            await asyncio.wait_for(client.stop(), 2)
        except Exception:  # noqa: S110 - the start failure is what gets reported
            pass
        raise
    return client


def command_client_options(settings: Settings) -> dict[str, Any]:
    """How a command connects (kafka_client.py), with requests bounded by the command timeout."""
    from .kafka_client import client_options

    return {**client_options(settings), "request_timeout_ms": int(settings.command_timeout_s * 1000)}


# ------------------------------------------------------------------- commands
def _topics_apply(args: argparse.Namespace, settings: Settings) -> int:
    from .topics import apply_topics, topics_to_apply

    async def apply() -> list[str]:
        return await asyncio.wait_for(apply_topics(settings, topics_to_apply(settings)), settings.command_timeout_s)

    report = run_against_broker(settings, "topics apply", apply)
    for line in report:
        print(line)
    return 1 if args.strict and any(line.startswith("drift") for line in report) else 0


def _schemas_export(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .api.reference import markdown
    from .api.routes import openapi_text
    from .schemas.export import write_json_schemas

    for path in write_json_schemas(args.out):
        print(path)
    openapi_path = Path(args.out) / "openapi.json"
    openapi_path.write_text(openapi_text())
    print(openapi_path)
    if args.api_doc:
        Path(args.api_doc).write_text(markdown())
        print(args.api_doc)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from .worker.preflight import broker_unreachable, startup_problem

    if not args.unsupervised:
        # The worker process checks its settings itself (and says so in one line, exit 2, which the
        # supervisor passes through): checking here too would ask the broker twice at every start.
        from .worker.supervisor import supervise

        logging.basicConfig(
            level=settings.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
        )
        return supervise(settings)
    problem = startup_problem(settings)
    if problem:
        raise UsageError(f"worker: {problem}")
    unreachable = broker_unreachable(settings)
    if unreachable:
        from .runtime.failure import WORKER_FAILED_EXIT_CODE

        print(f"milestream worker: {unreachable}; exiting to be started again", file=sys.stderr)
        return WORKER_FAILED_EXIT_CODE
    from .worker.app import app

    sys.argv = ["milestream", "worker", "-l", settings.log_level]
    app.main()
    return 0


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    for env, value, doc in settings.effective():
        print(f"{env}={value!s:<24} {doc}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    return run_against_broker(
        settings, "demo", lambda: run_demo(settings, customers=args.customers, timeout=args.timeout)
    )


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from .simulate import main as simulate_main

    return simulate_main(args)


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from .backfill.command import main as backfill_main

    if args.status and args.dry_run:
        raise UsageError("backfill: --status and --dry-run do not go together")
    return backfill_main(args, settings)


def _enrol(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from .enrolment_csv import enrolments_from_csv
    from .simulate import parse_time
    from .topics import load_topics

    text = read_text_file(args.csv, "--csv")
    at = parse_time(args.at, "--at") if args.at else datetime.now(timezone.utc)
    milestone = _defined_milestone(args, settings)
    try:
        events, errors = enrolments_from_csv(
            text, args.milestone, at, milestone, cycle=args.cycle, reenrol=args.reenrol
        )
    except UsageError as exc:
        raise UsageError(f"--csv {args.csv}: {exc}") from None
    for error in errors:
        print(f"rejected {error}", file=sys.stderr)
    for event in events:
        event["org_id"] = milestone.definition.org_id  # the customers are the milestone's organisation's
    if args.dry_run:
        for event in events:
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    else:
        topic = load_topics(settings)["enrolments"].name
        run_against_broker(settings, "enrol", lambda: _produce_enrolments(settings, topic, events))
        print(f"{len(events)} enrolments sent to {topic}", file=sys.stderr)
    return 1 if errors else 0


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    from .tail import TailOptions, tail

    if args.max is not None and args.max < 1:
        raise UsageError(f"--max {args.max}: must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    options = TailOptions(args.topic, args.customer, args.kind, args.from_beginning, args.max, args.timeout, args.json)
    try:
        return run_against_broker(settings, f"tail {args.topic}", lambda: tail(settings, options))
    except KeyboardInterrupt:  # Ctrl-C is how a user ends it
        return 0
    except BrokenPipeError:  # the reader went away (`milestream tail | head`)
        sys.stderr.close()  # nothing left to say, and nothing to say it to
        return 0


def _api_get(settings: Settings, what: str, path: str, query: dict[str, Any]) -> Any:
    """GET a worker's API; a refusal or an unreachable worker is a ``UsageError`` (one line)."""
    import json
    import urllib.error
    import urllib.request
    from urllib.parse import quote, urlencode

    from .worker.web import authorization_header

    base = (settings.api_url or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
    given = {k: v for k, v in query.items() if v is not None}
    url = base + quote(path) + (f"?{urlencode(given)}" if given else "")
    request = urllib.request.Request(url, headers=authorization_header(settings))
    try:
        with urllib.request.urlopen(request, timeout=settings.command_timeout_s) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise UsageError(f"{what}: {exc.code} {reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        cause = getattr(exc, "reason", exc)
        raise UsageError(f"{what}: no answer from the worker API at {base} ({cause})") from None


def _print_json(data: Any, one_line: bool) -> None:
    import json

    print(json.dumps(data, separators=(",", ":")) if one_line else json.dumps(data, indent=2, ensure_ascii=False))


def _progress(args: argparse.Namespace, settings: Settings) -> int:
    path = f"/customers/{args.customer}/milestones"
    if args.milestone:
        path += f"/{args.milestone}" + ("/history" if args.history else "")
    elif args.history:
        raise UsageError("--history needs --milestone")
    _print_json(_api_get(settings, "progress", path, {"org_id": args.org}), args.json)
    return 0


def _leaderboard(args: argparse.Namespace, settings: Settings) -> int:
    if not args.customer and not args.milestone:
        raise UsageError("leaderboard: give a milestone id, or --customer")
    if args.customer:
        query = {"org_id": args.org, "milestone_id": args.milestone, "neighbours": args.neighbours}
        data = _api_get(settings, "leaderboard", f"/leaderboards/customers/{args.customer}", query)
    else:
        query = {"target": args.target, "cycle": args.cycle, "top": args.top, "page": args.page}
        data = _api_get(settings, "leaderboard", f"/leaderboards/{args.milestone}", query)
    if args.json:
        _print_json(data, True)
    elif args.customer:
        for s in data["standings"]:
            print(f"{s['milestone_id']} {s['target_id']} cycle {s['cycle']}: rank {s['rank']} with {s['value']}")
    else:
        print(f"{data['milestone_id']} {data['target_id']} cycle {data['cycle']}")
        for entry in data["entries"]:
            print(f"{entry['rank']:>6}  {entry['value']:>16}  {entry['customer_id']}")
    return 0


def _defined_milestone(args: argparse.Namespace, settings: Settings) -> Compiled:
    """The milestone to enrol into, as the workers know it: from ``--definitions`` or the definitions topic."""
    from .simulate import Simulation, json_items

    simulation = Simulation(settings)
    if args.definitions:
        text = read_text_file(args.definitions, "--definitions")
        try:
            simulation.load_definitions(json_items(text), datetime.now(timezone.utc))
        except UsageError as exc:
            raise UsageError(f"--definitions {args.definitions}: {exc}") from None
        where = args.definitions
    else:
        run_against_broker(settings, "reading definitions", lambda: read_definitions(settings, simulation.topology))
        where = f"topic {simulation.topology.definitions_topic}"
    milestone = simulation.topology.registry.milestones.get(args.milestone)
    if milestone is None:
        raise UsageError(f"--milestone {args.milestone!r}: no such milestone in {where}")
    return milestone


async def read_definitions(settings: Settings, topology: Topology) -> None:
    """Apply the whole definitions topic to ``topology``, as a worker does at start-up."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from .worker.records import record_from_aiokafka

    topic = topology.definitions_topic
    consumer = await started(AIOKafkaConsumer(enable_auto_commit=False, **command_client_options(settings)), settings)
    try:
        if topic not in await consumer.topics():
            raise UsageError(
                f"topic {topic} does not exist on {settings.kafka_bootstrap_servers} "
                "(run `milestream topics apply`, or give --definitions)"
            )
        partitions = [TopicPartition(topic, p) for p in range(topology.topics["definitions"].partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        deadline = asyncio.get_running_loop().time() + settings.command_timeout_s
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    topology.process_definition(record_from_aiokafka(m))
    finally:
        await consumer.stop()


async def _produce_enrolments(settings: Settings, topic: str, events: list[dict]) -> None:
    import orjson
    from aiokafka import AIOKafkaProducer

    producer = await started(
        AIOKafkaProducer(acks="all", enable_idempotence=True, **command_client_options(settings)), settings
    )
    try:
        for event in events:
            await producer.send(topic, orjson.dumps(event), key=event["customer_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


# ----------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="milestream", description="Loyalty milestones on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)

    topics = sub.add_parser("topics", help="manage the topics declared in topics.yaml")
    topics_sub = topics.add_subparsers(dest="action", required=True)
    apply = topics_sub.add_parser("apply", help="create missing topics, report drift (never deletes)")
    apply.add_argument("--strict", action="store_true", help="exit 1 when an existing topic drifted")
    apply.set_defaults(func=_topics_apply)

    schemas = sub.add_parser("schemas", help="JSON Schema files generated from the models")
    schemas.add_argument("--out", default="schemas", help="output folder (default: schemas); openapi.json too")
    schemas.add_argument("--api-doc", default=None, help="also write the API reference (Markdown) to this file")
    schemas.set_defaults(func=_schemas_export)

    worker = sub.add_parser("worker", help="run a worker (restarted in place when it exits to recover)")
    worker.add_argument(
        "--unsupervised",
        action="store_true",
        help="run the Faust worker in this process, with no restart (for a supervisor of your own)",
    )
    worker.set_defaults(func=_worker)
    sub.add_parser("settings", help="print every setting's value in effect and its environment variable").set_defaults(
        func=_settings
    )

    demo = sub.add_parser("demo", help="publish a demo milestone and events, print the milestone events")
    demo.add_argument("--customers", type=int, default=20)
    demo.add_argument("--timeout", type=float, default=90.0)
    demo.set_defaults(func=_demo)

    simulate = sub.add_parser("simulate", help="run the engine over a JSON-lines file, event time as the clock")
    simulate.add_argument("--definitions", required=True, help="JSON or JSON-lines file of definitions/settings")
    simulate.add_argument("--events", required=True, help="JSON-lines file of customer events ('-' for stdin)")
    simulate.add_argument("--state", default=None, help="RocksDB folder for state (default: in memory)")
    simulate.add_argument(
        "--until", default=None, help="close cycles due by this time at the end (default: last event time)"
    )
    simulate.add_argument("--close-all", action="store_true", help="close every open cycle at the end")
    simulate.set_defaults(func=_simulate)

    backfill = sub.add_parser(
        "backfill",
        help="compute a milestone created after its start over the records the topics retain (docs/backfill.md)",
    )
    backfill.add_argument("--milestone", required=True, help="the milestone's id")
    backfill.add_argument("--status", action="store_true", help="where the milestone's last run stands")
    backfill.add_argument(
        "--dry-run",
        action="store_true",
        help="print what it would emit (the simulator over the topics); publish nothing",
    )
    backfill.set_defaults(func=_backfill)

    enrol = sub.add_parser("enrol", help="send a CSV of customers (with their own targets) as enrolment events")
    enrol.add_argument("--milestone", required=True, help="the milestone id")
    enrol.add_argument(
        "--csv",
        required=True,
        help="customer_id[,<target_id>][,<target_id>@<cycle>]"
        "[,<target_id>:<sub-target>][,+<target_id> (initial balance)]",
    )
    enrol.add_argument("--at", default=None, help="enrolment time, ISO 8601 with offset (default: now)")
    enrol.add_argument(
        "--cycle",
        default=None,
        help="enrol into this cycle: a custom period's name, the name outputs give a cycle, or #<n> "
        "(default: the cycle running at --at)",
    )
    enrol.add_argument(
        "--reenrol",
        choices=("resume", "reset"),
        default=None,
        help="a customer unenrolled before resumes their earlier progress or starts from zero (default: resume)",
    )
    enrol.add_argument(
        "--definitions",
        default=None,
        help="JSON or JSON-lines file of definitions to check the milestone and columns against "
        "(default: the definitions topic)",
    )
    enrol.add_argument("--dry-run", action="store_true", help="print the events as JSON lines instead of sending them")
    enrol.set_defaults(func=_enrol)

    tail = sub.add_parser("tail", help="print a topic's records as they arrive, decoded (default: promotions)")
    tail.add_argument(
        "topic", nargs="?", default="promotions", help="logical topic name from topics.yaml (default: promotions)"
    )
    tail.add_argument("--customer", default=None, help="only this customer's records")
    tail.add_argument(
        "--kind",
        default=None,
        help="only records of this kind, type or dead-letter reason (e.g. achievement, cycle_close)",
    )
    tail.add_argument(
        "--from-beginning", action="store_true", help="from the topic's start (default: new records only)"
    )
    tail.add_argument(
        "--max", type=int, default=None, help="stop after this many records (exit 1 if --timeout comes first)"
    )
    tail.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    tail.add_argument("--json", action="store_true", help="one JSON object a line instead of indented JSON")
    tail.set_defaults(func=_tail)

    progress = sub.add_parser("progress", help="a customer's milestone progress, from a worker's API")
    progress.add_argument("customer", help="the customer id")
    progress.add_argument("--milestone", default=None, help="only this milestone")
    progress.add_argument("--history", action="store_true", help="the milestone's recent contributions")
    progress.add_argument("--org", default=None, help="the customer's organisation (default: default)")
    progress.add_argument("--json", action="store_true", help="one line of JSON instead of indented JSON")
    progress.set_defaults(func=_progress)

    board = sub.add_parser("leaderboard", help="a milestone's leaderboard, from a worker's API")
    board.add_argument("milestone", nargs="?", default=None, help="the milestone id")
    board.add_argument("--target", default=None, help="a target id or 'group' (default: the headline target)")
    board.add_argument("--cycle", type=int, default=None, help="cycle index (default: the cycle running now)")
    board.add_argument("--top", type=int, default=10, help="customers per page (default 10)")
    board.add_argument("--page", type=int, default=1, help="page, from 1")
    board.add_argument("--customer", default=None, help="this customer's rank in every leaderboard instead")
    board.add_argument("--org", default=None, help="with --customer: the customer's organisation")
    board.add_argument("--neighbours", type=int, default=2, help="with --customer: customers shown around them")
    board.add_argument("--json", action="store_true", help="the API's answer as one line of JSON")
    board.set_defaults(func=_leaderboard)

    from .replay import add_replay_parser

    add_replay_parser(sub)
    return parser


def _fail(message: str) -> int:
    line = " ".join(message.split())
    if len(line) > MAX_ERROR_CHARS:
        line = line[:MAX_ERROR_CHARS] + " ..."
    print(f"milestream: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not _worker:
        # The Kafka client logs each failed connection; the command reports the failure once, itself.
        logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    try:
        settings = Settings()
    except ValidationError as exc:
        return _fail(f"bad setting: {describe_settings_error(exc)}")
    try:
        return int(args.func(args, settings) or 0)
    except UsageError as exc:
        return _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
