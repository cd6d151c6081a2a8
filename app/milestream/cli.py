"""The ``milestream`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .settings import Settings


def _topics_apply(args: argparse.Namespace) -> int:
    from .topics import apply_topics, load_topics

    settings = Settings.from_env()
    report = asyncio.run(apply_topics(settings, load_topics(settings)))
    for line in report:
        print(line)
    return 1 if args.strict and any(line.startswith("drift") for line in report) else 0


def _schemas_export(args: argparse.Namespace) -> int:
    from .schemas.export import write_json_schemas

    for path in write_json_schemas(args.out):
        print(path)
    return 0


def _worker(args: argparse.Namespace) -> int:
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

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
