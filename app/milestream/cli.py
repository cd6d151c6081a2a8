"""The ``milestream`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .settings import Settings


def _topics_apply(args: argparse.Namespace) -> int:
    from .topics import apply_topics, topics_to_apply

    settings = Settings.from_env()
    report = asyncio.run(apply_topics(settings, topics_to_apply(settings)))
    for line in report:
        print(line)
    return 1 if args.strict and any(line.startswith("drift") for line in report) else 0


def _schemas_export(args: argparse.Namespace) -> int:
    from .schemas.export import write_json_schemas

    for path in write_json_schemas(args.out):
        print(path)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .worker.preflight import startup_problem

    problem = startup_problem(Settings.from_env())
    if problem:
        print(f"milestream worker: {problem}", file=sys.stderr)
        return 2
    from .worker.app import app

    sys.argv = ["milestream", "worker", "-l", Settings.from_env().log_level]
    app.main()
    return 0


def _settings(args: argparse.Namespace) -> int:
    for env, default, doc in Settings.documentation():
        print(f"{env}={default!s:<24} {doc}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(Settings.from_env(), customers=args.customers, timeout=args.timeout))


def _simulate(args: argparse.Namespace) -> int:
    from .simulate import main as simulate_main

    return simulate_main(args)


def _enrol(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    import orjson

    from .enrolment_csv import enrolments_from_csv
    from .topics import load_topics

    with open(args.csv, encoding="utf-8-sig", newline="") as handle:
        text = handle.read()
    at = datetime.fromisoformat(args.at) if args.at else datetime.now(timezone.utc)
    if at.tzinfo is None:
        print("--at needs a time zone offset", file=sys.stderr)
        return 2
    events, errors = enrolments_from_csv(text, args.milestone, at)
    for error in errors:
        print(f"rejected {error}", file=sys.stderr)
    if args.dry_run:
        for event in events:
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    else:
        settings = Settings.from_env()
        asyncio.run(_produce_enrolments(settings, load_topics(settings)["enrolments"].name, events))
        print(f"{len(events)} enrolments sent to {load_topics(settings)['enrolments'].name}", file=sys.stderr)
    return 1 if errors else 0


async def _produce_enrolments(settings: Settings, topic: str, events: list[dict]) -> None:
    import orjson
    from aiokafka import AIOKafkaProducer

    from .kafka_client import client_options, start_client

    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await start_client(producer, settings)
    try:
        for event in events:
            await producer.send(topic, orjson.dumps(event), key=event["customer_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="milestream", description="Loyalty milestones on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)

    topics = sub.add_parser("topics", help="manage the topics declared in topics.yaml")
    topics_sub = topics.add_subparsers(dest="action", required=True)
    apply = topics_sub.add_parser("apply", help="create missing topics, report drift (never deletes)")
    apply.add_argument("--strict", action="store_true", help="exit 1 when an existing topic drifted")
    apply.set_defaults(func=_topics_apply)

    schemas = sub.add_parser("schemas", help="JSON Schema files generated from the models")
    schemas.add_argument("--out", default="schemas", help="output folder (default: schemas)")
    schemas.set_defaults(func=_schemas_export)

    sub.add_parser("worker", help="run a Faust worker").set_defaults(func=_worker)
    sub.add_parser("settings", help="list every setting and its environment variable").set_defaults(func=_settings)

    demo = sub.add_parser("demo", help="publish a demo milestone and events, print the milestone events")
    demo.add_argument("--customers", type=int, default=20)
    demo.add_argument("--timeout", type=float, default=90.0)
    demo.set_defaults(func=_demo)

    simulate = sub.add_parser("simulate", help="run the engine over a JSON-lines file, event time as the clock")
    simulate.add_argument("--definitions", required=True, help="JSON or JSON-lines file of definitions/settings")
    simulate.add_argument("--events", required=True, help="JSON-lines file of customer events ('-' for stdin)")
    simulate.add_argument("--state", default=None, help="RocksDB folder for state (default: in memory)")
    simulate.add_argument("--until", default=None, help="close cycles due by this time at the end (default: last event time)")
    simulate.add_argument("--close-all", action="store_true", help="close every open cycle at the end")
    simulate.set_defaults(func=_simulate)

    enrol = sub.add_parser("enrol", help="send a CSV of customers (with their own targets) as enrolment events")
    enrol.add_argument("--milestone", required=True, help="the milestone id")
    enrol.add_argument("--csv", required=True, help="customer_id[,<target_id>][,<target_id>@<cycle>][,<target_id>:<sub-target>]")
    enrol.add_argument("--at", default=None, help="enrolment time, ISO 8601 with offset (default: now)")
    enrol.add_argument("--dry-run", action="store_true", help="print the events as JSON lines instead of sending them")
    enrol.set_defaults(func=_enrol)

    args = parser.parse_args(argv)
    from .kafka_client import KafkaConnectionSettingsError, KafkaUnreachable

    try:
        return int(args.func(args) or 0)
    except (KafkaUnreachable, KafkaConnectionSettingsError) as exc:
        print(f"milestream {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
