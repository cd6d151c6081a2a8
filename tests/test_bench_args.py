"""The benchmarks that reuse ``bench.run.Bench`` give it every option its phases read."""

import inspect
import re

from bench import backfill, run

# The phases of run.Bench the backfill benchmark runs (bench/backfill.py, ``phases``).
REUSED = ("__init__", "setup", "produce", "milestream", "cleanup")


def test_the_backfill_benchmark_gives_run_bench_every_option_its_phases_read():
    read = set()
    for name in REUSED:
        read |= set(re.findall(r"self\.args\.([a-z_]+)", inspect.getsource(getattr(run.Bench, name))))
    assert "leaderboard" in read  # the pattern still finds them
    args = backfill.parse_args(["--quick", "--no-write"])
    missing = sorted(name for name in read if not hasattr(args, name))
    assert not missing, f"bench.backfill's arguments lack {missing}"


def test_only_the_benchmarks_broker_runs_with_the_quick_jit_compiler(monkeypatch, tmp_path):
    from bench import cluster
    from deploy import local_kafka

    started = {}
    monkeypatch.setattr(local_kafka, "fetch", lambda: None)
    monkeypatch.setattr(local_kafka, "start", lambda folder, **options: started.update(options))
    cluster.started_broker(tmp_path)
    assert started["jvm_options"] == ("-XX:TieredStopAtLevel=1",)
    assert not any(option.startswith("-XX:TieredStopAtLevel") for option in local_kafka.JVM_OPTS)
