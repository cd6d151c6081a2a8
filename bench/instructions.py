"""Instructions per record in process, counted by valgrind: a measure the host's load does not move.

The rates of ``make bench`` move by a third from one hour to the next on a shared machine, more
than most changes to the code. This counts the machine instructions the topology executes per
record instead (valgrind's callgrind tool, a fixed hash seed), the same on every run of the same code, so two
commits can be compared by running this once on each. Each workload runs in a child process twice,
with and without its measured records, and the difference is divided by the records: start-up and
set-up cancel out. The state is the memory store under a batch's overlay, written back every 500
records, as the worker's checkpoint does.

* ``transactions``: the throughput workload of ``make bench`` (bench/workload.py), after 4,000
  records of warm-up;
* ``transactions, leaderboard``: the same with the milestone's leaderboard on;
* ``cycle close``: closing one monthly cycle, per customer (500 customers a close tick), after as
  many customers' enrolments (the close's topology keeps no outbox, as the worker's).

``python -m bench.instructions [--records N] [--code DIR] [--write]``: ``--code`` runs the
``app`` directory of another checkout (a worktree of an older commit) for a comparison; valgrind
makes a run about 50 times slower, so the default is small (2,000 records, about 5 minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .report import REPO_ROOT, git_revision, write_block

START_MARKER = "<!-- instructions:start -->"
END_MARKER = "<!-- instructions:end -->"
WORKLOADS = ("transactions", "transactions, leaderboard", "cycle close")
WARM_UP = 4_000
SLICE = 500  # records per overlay, as a checkpoint holds them
NOW = datetime(2026, 12, 15, tzinfo=timezone.utc)


# ------------------------------------------------------------------ the child: one workload, no output
def _write_back(base, overlay) -> None:
    changes, _ = overlay.take_changes()
    for key, value in changes.items():
        if value is None:
            base._delete(key)
        else:
            base._put(key, value)


def _transactions(records: int, leaderboard: bool, measured: bool) -> None:
    from milestream.pipeline.driver import TopologyTestDriver
    from milestream.state.overlay import OverlayStore

    from . import workload

    load = workload.transactions(WARM_UP + records, max(1_000, (WARM_UP + records) // 4), NOW)
    driver = TopologyTestDriver()
    definition = workload.definition(NOW, leaderboard=leaderboard)
    driver.pipe("definitions", workload.MILESTONE_ID, definition)
    base = driver.store
    applied = load.records if measured else load.records[:WARM_UP]
    for start in range(0, len(applied), SLICE):
        overlay = OverlayStore(base)
        driver.store = overlay
        for key, value in applied[start : start + SLICE]:
            driver.pipe("transactions", key, value, timestamp=NOW)
        _write_back(base, overlay)
        driver.produced.clear()


def _close(customers: int, measured: bool) -> None:
    import orjson

    from milestream.pipeline.driver import TopologyTestDriver
    from milestream.settings import Settings
    from milestream.state.overlay import OverlayStore

    from . import close

    driver = TopologyTestDriver(Settings(close_batch_size=SLICE), keep_outbox=False)  # the worker's topology
    driver.pipe("definitions", "bench-close", close.definition())
    during = close.CYCLE_START + timedelta(days=10)
    for n in range(customers):
        customer = f"c{n:08d}"
        enrolment = {
            "type": "enrolment",
            "event_id": f"e{n}",
            "customer_id": customer,
            "event_time": during.isoformat(),
            "milestone_id": "bench-close",
        }
        driver.pipe("enrolments", customer, orjson.dumps(enrolment), timestamp=during)
    if not measured:
        return
    now = close.CYCLE_START.replace(month=2)
    tick = orjson.dumps({"type": "close_tick", "schema_version": 1, "now": now.isoformat()})
    base = driver.store
    while True:
        overlay = OverlayStore(base)
        driver.store = overlay
        processed = driver.pipe("close-ticks", None, tick, timestamp=now)
        _write_back(base, overlay)
        driver.produced.clear()
        if not any(r.topic == driver.topic("close-ticks") for r in processed.records):
            return


def child(workload: str, records: int, measured: bool) -> None:
    """Set the workload up for ``records``, then process them if ``measured``."""
    if workload == "cycle close":
        _close(records, measured)
    else:
        _transactions(records, workload.endswith("leaderboard"), measured)


# ------------------------------------------------------------------ the parent: valgrind runs
def _instructions(workload: str, records: int, measured: bool, code: Path) -> int:
    # A fixed hash seed: with a random one, set and dict layouts (and the work behind them) differ from
    # run to run, by about 10,000 instructions per record over 1,000 records.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(REPO_ROOT)]), "PYTHONHASHSEED": "0"}
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        workload,
        "--records",
        str(records),
        *(() if measured else ("--set-up-only",)),
    ]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{workload} ({records} records) failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def measure(records: int, code: Path) -> dict[str, int]:
    """Instructions per record of each workload."""
    runs = [(workload, measured) for workload in WORKLOADS for measured in (False, True)]
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        counts = dict(zip(runs, pool.map(lambda run: _instructions(run[0], records, run[1], code), runs), strict=True))
    return {workload: round((counts[workload, True] - counts[workload, False]) / records) for workload in WORKLOADS}


def markdown(results: dict[str, int], revision: str, records: int) -> str:
    lines = [
        START_MARKER,
        f"Counted {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at `{revision}`, {records:,} records per "
        "workload (`python -m bench.instructions`).",
        "",
        "| Workload | Instructions per record |",
        "|---|---:|",
        *(f"| {workload} | {count:,} |" for workload, count in results.items()),
        END_MARKER,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000, help="records measured per workload (default 2000)")
    parser.add_argument("--code", type=Path, default=REPO_ROOT / "app", help="the app directory to measure")
    parser.add_argument("--write", action="store_true", help="update the block in BENCHMARKS.md")
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--set-up-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.records, measured=not args.set_up_only)
        return 0
    if args.records <= 0:
        print("--records must be positive")
        return 2
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind): instructions cannot be counted")
        return 1
    results = measure(args.records, args.code.resolve())
    for workload, count in results.items():
        print(f"{workload:<28} {count:>10,} instructions per record")
    if args.write:
        write_block(
            START_MARKER,
            END_MARKER,
            markdown(results, git_revision(), args.records),
            "Instructions per record (valgrind)",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
