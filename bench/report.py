"""The machine a benchmark ran on, the results table, and BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from milestream import build

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
START_MARKER = "<!-- results:start -->"
END_MARKER = "<!-- results:end -->"


# ----------------------------------------------------------------------- machine


def _first_match(path: str, pattern: str) -> str | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found = re.search(pattern, text, re.M)
    return found.group(1).strip() if found else None


def _command_output(*command: str) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def machine(kafka: str) -> dict[str, Any]:
    mem_kb = _first_match("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _first_match("/proc/cpuinfo", r"^model name\s*:\s*(.+)$") or platform.processor() or "unknown",
        "ram_gib": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "milestream_build": build.describe(),
        "java": _command_output("java", "-version") or "unknown",
        "kafka": kafka,
    }


def git_revision() -> str:
    commit = _command_output("git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD") or "unknown"
    dirty = _command_output("git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no")
    return f"{commit}{' (with uncommitted changes)' if dirty else ''}"


# ------------------------------------------------------------------------ tables


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _cpu_us(phase: dict[str, Any]) -> str:
    per_s = phase.get("events_per_cpu_s")
    return "—" if not per_s else f"{1e6 / per_s:,.0f}"


def _cores(phase: dict[str, Any]) -> str:
    cores = phase.get("cores") or {}
    if not cores:
        return "—"
    broker = f"{cores['broker']:.2f}" if "broker" in cores else "?"
    return f"{cores.get('consumer', 0):.2f} / {broker} / {cores.get('others', 0):.2f}"


THROUGHPUT_HEADER = [
    "Measurement",
    "Events",
    "Processing s",
    "Events/s",
    "× naive Faust",
    "× Quix",
    "Events/s from process start to committed",
    "Consumer CPU µs/event",
    "Cores: consumer / broker / other",
    "Outputs",
]


def _times(phase: dict[str, Any], base: dict[str, Any] | None) -> str:
    """A phase's events/s as a multiple of a baseline's."""
    return "—" if not base else f"{phase['processing_rate'] / base['processing_rate']:.2f}"


def throughput_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    naive, quix = results.get("naive"), results.get("quix")
    produce = results.get("produce")
    if produce:
        rows.append(
            [
                "Produce (aiokafka, acks=1)",
                f"{produce['events']:,}",
                _seconds(produce["seconds"]),
                _rate(produce["rate"]),
                "—",
                "—",
                "—",
                "—",
                "—",
                "—",
            ]
        )
    labels = {
        "raw": "Raw aiokafka consumer (count only)",
        "naive": "Naive Faust agent (orjson + rocksdict sum)",
        "quix": "Quix Streams app (monthly sum in RocksDB, threshold outputs)",
        "milestream": "Milestream worker",
        "workers": "Milestream, two workers sharing the partitions, once both process",
    }
    for key, label in labels.items():
        phase = results.get(key)
        if not phase:
            continue
        outputs = phase.get("outputs")
        rows.append(
            [
                label,
                f"{phase['events']:,}",
                _seconds(phase["processing_seconds"]),
                _rate(phase["processing_rate"]),
                "—" if key == "workers" else _times(phase, naive),
                "—" if key == "workers" else _times(phase, quix),
                _rate(phase.get("e2e_rate")),
                _cpu_us(phase),
                _cores(phase),
                "—" if outputs is None else f"{outputs:,}",
            ]
        )
    capacity = results.get("output_capacity")
    if capacity:
        rows.append(
            [
                "Milestream worker, every event yields an output",
                f"{capacity['events']:,}",
                _seconds(capacity["processing_seconds"]),
                _rate(capacity["processing_rate"]),
                _times(capacity, naive),
                _times(capacity, quix),
                "—",
                "—",
                "—",
                f"{capacity['events']:,}",
            ]
        )
    for key, label in (
        ("driver", "In-process TopologyTestDriver (memory state)"),
        ("engine", "In-process Engine.apply only"),
    ):
        phase = (results.get("inprocess") or {}).get(key)
        if phase:
            rows.append(
                [
                    label,
                    f"{phase['events']:,}",
                    _seconds(phase["seconds"]),
                    _rate(phase["rate"]),
                    "—",
                    "—",
                    "—",
                    f"{1e6 / phase['rate']:,.0f}",
                    "1 core",
                    f"{phase['outputs']:,}",
                ]
            )
    return rows


RATIO_HEADER = ["", "Events/s", "Events/s from process start", "Events per consumer CPU-second"]


def ratio_rows(results: dict[str, Any]) -> list[list[str]]:
    ratios = results.get("ratios") or {}
    rows = []
    for key, label in (
        ("raw", "Milestream / raw aiokafka"),
        ("naive", "Milestream / naive Faust"),
        ("quix", "Milestream / Quix Streams"),
    ):
        if key in ratios:
            r = ratios[key]
            rows.append([label, _ratio(r.get("processing")), _ratio(r.get("e2e")), _ratio(r.get("cpu"))])
    return rows


def latency_rows(results: dict[str, Any]) -> list[list[str]]:
    latency = results.get("latency")
    if not latency:
        return []
    rows = []
    for key, label in (
        ("from_ack", "input acked → output received"),
        ("from_send", "input sent → output received"),
        ("ack_to_output_produced", "input acked → output produced by the worker"),
        ("output_produced_to_arrival", "output produced → output received"),
    ):
        p = latency.get(key)
        if not p:
            continue
        rows.append([label, _ms(p["p50"]), _ms(p["p95"]), _ms(p["p99"]), _ms(p["max"]), _ms(p["mean"])])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


# ----------------------------------------------------------------------- summary

SUMMARY_HEADER = [
    "Commit",
    "Date",
    "Events",
    "Raw aiokafka ev/s",
    "Naive Faust ev/s",
    "Quix ev/s",
    "Worker ev/s",
    "Worker CPU µs/event",
    "× naive Faust",
    "× Quix",
    "% of raw",
    "Latency p50 / p99 ms",
    "In-process µs/event",
    "Engine.apply µs/event",
]
SUMMARY_TITLE = "### Summary, one row per run (newest first)"
SUMMARY_HISTORY = 20  # rows of earlier runs kept in BENCHMARKS.md


def summary_row(results: dict[str, Any]) -> list[str]:
    """One line per run with the figures to compare across commits."""

    def rate(key: str) -> float | None:
        return (results.get(key) or {}).get("processing_rate")

    def per_event(rate: float | None) -> str:
        return "—" if not rate else f"{1e6 / rate:,.1f}"

    worker = results.get("milestream") or {}
    worker_rate = worker.get("processing_rate")

    def share(key: str, scale: float, digits: int, suffix: str = "") -> str:
        base = rate(key)
        return "—" if not worker_rate or not base else f"{scale * worker_rate / base:.{digits}f}{suffix}"

    latency = (results.get("latency") or {}).get("from_ack") or {}
    inprocess = results.get("inprocess") or {}
    revision = str(results.get("revision", "unknown")).replace(" (with uncommitted changes)", "+dirty")
    return [
        f"`{revision}`",
        str(results.get("date", "—")).removesuffix(" UTC"),
        f"{results.get('settings', {}).get('events', 0):,}",
        _rate(rate("raw")),
        _rate(rate("naive")),
        _rate(rate("quix")),
        _rate(worker_rate),
        _cpu_us(worker),
        share("naive", 1, 2),
        share("quix", 1, 3),
        share("raw", 100, 2, " %"),
        "—" if latency.get("p50") is None else f"{latency['p50']:,.1f} / {latency['p99']:,.1f}",
        per_event((inprocess.get("driver") or {}).get("rate")),
        per_event((inprocess.get("engine") or {}).get("rate")),
    ]


def summary_markdown(results: dict[str, Any], earlier: Sequence[str] = ()) -> str:
    """The summary table: this run's row, then ``earlier`` rows (markdown lines) as they were."""
    return "\n".join([markdown_table(SUMMARY_HEADER, [summary_row(results)]), *earlier])


def earlier_summary_rows(block: str) -> list[str]:
    """The rows of the summary table in a results block written before, if it has the same columns."""
    header = markdown_table(SUMMARY_HEADER, []).splitlines()
    lines = block.splitlines()
    for i in range(len(lines) - 1):
        if lines[i] == header[0] and lines[i + 1] == header[1]:
            rows = []
            for line in lines[i + 2 :]:
                if not line.startswith("| "):
                    break
                rows.append(line)
            return rows[:SUMMARY_HISTORY]
    return []


# ---------------------------------------------------------------------- output


def latency_summary(latency: dict[str, Any], capacity: dict[str, Any] | None) -> str:
    basis = f" (half the worker's {capacity['processing_rate']:,.0f}/s on such events)" if capacity else ""
    return (
        f"{latency['events']:,} transactions of fresh customers at {latency['achieved_rate']:,.0f}/s{basis}, "
        f"each producing one milestone event; {latency['missing']} without an output"
    )


def fell_behind(latency: dict[str, Any]) -> bool:
    """True when the median latency of the last window is far above the first: the worker did not keep up."""
    windows = [w for w in latency.get("timeline") or [] if w["p50"] is not None]
    if len(windows) < 3:
        return False
    first, last = windows[0]["p50"], max(w["p50"] for w in windows[-2:])
    return last > 1000 and last > 4 * first


def latency_timeline(latency: dict[str, Any]) -> str:
    windows = latency.get("timeline") or []
    return ", ".join(f"{w['p50']:,.0f}" for w in windows if w["p50"] is not None)


def workers_note(results: dict[str, Any]) -> str | None:
    """How the two-worker deployment compares with one worker, once both workers were processing."""
    workers, one = results.get("workers"), results.get("milestream")
    if not workers:
        return None
    text = (
        f"**{workers['workers']} workers:** {workers['processing_rate']:,.0f} events/s once every worker was "
        f"processing (the last {workers['events']:,} events; before that the first to join held every "
        f"partition until the group's rebalance; {workers['whole_rate']:,.0f}/s over the whole phase)"
    )
    if one:
        text += (
            f", {workers['processing_rate'] / one['processing_rate']:.2f} × one worker, at "
            f"{_cpu_us(workers)} µs of CPU an event against {_cpu_us(one)}"
        )
    return text + (
        f". Records each: {', '.join(f'{n:,}' for n in workers['per_worker'])}. This host's 2 cores also run the "
        "broker and the benchmark: the CPU an event costs is what shows the scaling. The ratios to the "
        "baselines are one process's against one process's, so this row has none."
    )


def floor(results: dict[str, Any]) -> dict[str, float] | None:
    """The least an event costs whatever runs it: the raw consumer's time an event, the worker's
    decoding, ``Engine.apply`` and the customer document's round trip through RocksDB, each measured
    alone in this run; the rest of the worker's work (history, read index, outputs, changelog) left
    out. Its inverse bounds the rate of any worker doing this work on one core."""
    inprocess = results.get("inprocess") or {}
    parts, engine, raw = inprocess.get("parts"), inprocess.get("engine"), results.get("raw")
    if not (parts and engine and raw):
        return None
    consume = 1e6 / raw["processing_rate"]
    libraries = consume + parts["decode_us"] + parts["state_us"]  # Kafka client, pydantic, orjson, RocksDB
    total = libraries + 1e6 / engine["rate"]
    quix = (results.get("quix") or {}).get("processing_rate")
    return {
        "consume_us": consume,
        "decode_us": parts["decode_us"],
        "engine_us": 1e6 / engine["rate"],
        "state_us": parts["state_us"],
        "total_us": total,
        "ceiling_rate": 1e6 / total,
        "libraries_rate": 1e6 / libraries,
        **({"ceiling_x_quix": 1e6 / total / quix, "libraries_x_quix": 1e6 / libraries / quix} if quix else {}),
    }


def floor_note(results: dict[str, Any]) -> str | None:
    f = floor(results)
    if f is None:
        return None
    text = (
        f"**The floor of an event's cost:** consuming it {f['consume_us']:.1f} µs (the raw consumer's rate), "
        f"decoding and validating it {f['decode_us']:.1f}, `Engine.apply` {f['engine_us']:.1f}, the customer "
        f"document's round trip through RocksDB {f['state_us']:.1f}: {f['total_us']:.1f} µs, so at most "
        f"{f['ceiling_rate']:,.0f} events/s on one core even if the rest of the worker's work (history, read "
        f"index, close index, outputs, changelog) cost nothing; the parts outside Milestream's code alone "
        f"(Kafka client, pydantic, orjson, RocksDB) allow {f['libraries_rate']:,.0f}/s"
    )
    if "ceiling_x_quix" in f:
        text += f" ({f['ceiling_x_quix']:.2f} and {f['libraries_x_quix']:.2f} × the Quix app)"
    return text + "."


def console_report(results: dict[str, Any]) -> str:
    parts = ["", "Throughput", text_table(THROUGHPUT_HEADER, throughput_rows(results))]
    scaling = workers_note(results)
    if scaling:
        parts += ["", scaling.replace("**", "")]
    ratios = ratio_rows(results)
    if ratios:
        parts += ["", "Ratios", text_table(RATIO_HEADER, ratios)]
    least = floor_note(results)
    if least:
        parts += ["", least.replace("**", "").replace("`", "")]
    latency = latency_rows(results)
    if latency:
        lat = results["latency"]
        parts += [
            "",
            f"Event → output latency (ms): {latency_summary(lat, results.get('output_capacity'))}",
            text_table(["", "p50", "p95", "p99", "max", "mean"], latency),
            f"p50 per {lat.get('window_s', 5):.0f} s of sending: {latency_timeline(lat)} ms",
        ]
        if fell_behind(lat):
            parts.append(
                "The worker fell behind the paced rate: these figures include queueing, not just the "
                "pipeline's latency (see the cores used by other processes)."
            )
    hotspots = (results.get("inprocess") or {}).get("hotspots")
    if hotspots:
        parts += [
            "",
            "In-process hotspots (cProfile, share of total time)",
            text_table(["Function", "Calls", "Own", "Cumulative"], _hotspot_rows(hotspots[:12])),
        ]
    busy = contention(results)
    if busy:
        parts += ["", f"Note: other processes were busy during the measurements ({busy})."]
    parts.append("")
    parts.append(f"Wall-clock time of the run: {results['wall_clock_seconds']:.0f} s")
    parts += ["", "Summary (a BENCHMARKS.md row, to compare across commits)", summary_markdown(results)]
    return "\n".join(parts)


def _hotspot_rows(hotspots: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [f"`{h['function']}`", f"{h['calls']:,}", f"{h['own_share']:.1%}", f"{h['cumulative_share']:.1%}"]
        for h in hotspots
    ]


def contention(results: dict[str, Any], threshold: float = 0.25) -> str:
    """Which measurements other processes took noticeable CPU during, e.g. "naive Faust: 0.97 cores"."""
    names = {
        "raw": "raw aiokafka",
        "naive": "naive Faust",
        "quix": "Quix",
        "milestream": "Milestream",
        "latency": "latency",
    }
    busy = []
    for key, name in names.items():
        others = ((results.get(key) or {}).get("cores") or {}).get("others", 0.0)
        if others >= threshold:
            busy.append(f"{name}: {others:.2f} cores")
    return ", ".join(busy)


def results_markdown(results: dict[str, Any], earlier: Sequence[str] = ()) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = [
        SUMMARY_TITLE,
        "",
        summary_markdown(results, earlier),
        "",
        f"Run on **{results['date']}** at commit `{results['revision']}`; the whole run took "
        f"{results['wall_clock_seconds']:.0f} s.",
        "",
        f"- **Machine:** {m['cpus']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM, {m['os']}",
        f"- **Software:** Python {m['python']}, {m['java']}, Kafka {m['kafka']}; Milestream's "
        f"{m.get('milestream_build', 'pure Python')} build",
        f"- **Workload:** {s['events']:,} transactions of {s['customers']:,} customers, "
        f"{s['partitions']} partitions, one milestone (monthly gross spend 5,000, sub-targets 25/50/75 %)",
        f"- **Settings:** the worker: batches of up to {s['max_poll_records']} records, "
        f"{s['processing_guarantee']}, a checkpoint every {s.get('checkpoint_interval_ms', 0):g} ms (or "
        f"{s['max_poll_records']} records); the naive Faust agent: RocksDB table, commit "
        f"interval {s.get('commit_interval', 0.5):g} s, stream buffer 8192; the Quix app: RocksDB state with "
        f"its changelog, commit interval {s.get('commit_interval', 0.5):g} s, the worker's guarantee",
        "",
        "### Throughput",
        "",
        markdown_table(THROUGHPUT_HEADER, throughput_rows(results)),
    ]
    busy = contention(results)
    if busy:
        lines += [
            "",
            f"Other processes were busy during the measurements ({busy}); the rates are lower than "
            "on a quiet machine, the CPU per event is not.",
        ]
    scaling = workers_note(results)
    if scaling:
        lines += ["", scaling]
    ratios = ratio_rows(results)
    if ratios:
        lines += ["", "### Ratios", "", markdown_table(RATIO_HEADER, ratios)]
    least = floor_note(results)
    if least:
        lines += ["", least]
    latency = results.get("latency")
    if latency:
        lines += [
            "",
            "### Event → output latency",
            "",
            f"{latency_summary(latency, results.get('output_capacity'))}. Milliseconds:",
            "",
            markdown_table(["", "p50", "p95", "p99", "max", "mean"], latency_rows(results)),
            "",
            f"Median per {latency.get('window_s', 5):.0f} s of sending (a rising series means the worker fell "
            f"behind): {latency_timeline(latency)} ms.",
        ]
        if fell_behind(latency):
            cores = latency.get("cores") or {}
            lines += [
                "",
                f"**The worker fell behind the paced rate in this run** (other processes used "
                f"{cores.get('others', 0):.2f} cores while it ran), so these latencies are mostly queueing.",
            ]
    inprocess = results.get("inprocess") or {}
    if inprocess.get("engine"):
        lines += [
            "",
            f"Decoding alone (`Transaction.model_validate_json`): {inprocess['engine']['decode_rate']:,.0f} events/s.",
        ]
    if inprocess.get("hotspots"):
        lines += [
            "",
            f"### In-process hotspots (cProfile of the driver over {inprocess['profile_events']:,} events)",
            "",
            markdown_table(["Function", "Calls", "Own time", "Cumulative"], _hotspot_rows(inprocess["hotspots"][:12])),
        ]
    return "\n".join(lines)


def write_block(start: str, end: str, block: str, section: str) -> None:
    """Put ``block`` (which starts with ``start`` and ends with ``end``) in BENCHMARKS.md in place of
    the block between those markers, or at the end under a new ``section`` heading."""
    text = BENCHMARKS_MD.read_text()
    if start in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {section}\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)


def update_benchmarks_md(results: dict[str, Any], path: Path = BENCHMARKS_MD) -> None:
    """Rewrite the results block of BENCHMARKS.md, keeping everything around it."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START_MARKER}\n{END_MARKER}\n"
    if START_MARKER in text and END_MARKER in text:
        before, rest = text.split(START_MARKER, 1)
        previous, after = rest.split(END_MARKER, 1)
        block = f"{START_MARKER}\n{results_markdown(results, earlier_summary_rows(previous))}\n{END_MARKER}"
        text = before + block + after
    else:
        block = f"{START_MARKER}\n{results_markdown(results)}\n{END_MARKER}"
        text = text.rstrip("\n") + "\n\n## Latest results\n\n" + block + "\n"
    path.write_text(text)
