"""One benchmark run: same broker, same data, every stage; see ``bench/__init__.py``."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import collector, placement
from bench.harness import BaselineFailed, broker, say
from bench.harness.context import Run
from bench.options import TANSU_RECORD_BUDGET, broker_records, parse_args
from bench.report import (
    cost_point_table,
    machine_info,
    markdown_table,
    write_chart,
    write_results,
)
from bench.stages.ceiling import CeilingMode, raw_ceiling
from bench.stages.faust_agent import faust_baseline
from bench.stages.hostile import hostile
from bench.stages.quix_survey import quix_baseline
from bench.stages.scale import scale_out
from bench.stages.worker import pinned_drain, prefill, worker_stages
from pipeline.kafka.topics import SOURCE_TOPICS
from pipeline.settings import Settings, format_duration

__all__ = ["comparison", "main", "run", "side_stages"]


def _raw(run: Run, mode: CeilingMode) -> dict[str, float]:
    return asyncio.run(
        raw_ceiling(run.bootstrap, run.prefix, run.args.events, mode=mode, timeout=300)
    )


def _peers(run: Run, surveys: int) -> dict[str, Any]:
    """The tuned Faust agents (plain, with a table) and Quix Streams, pinned like ours; Quix
    not in ``--short`` (its start-up alone is ~15 s, and a few dozen surveys measure nothing).

    A peer that fails is reported under ``peer_failures`` and left out of the comparison: one
    framework's trouble with the broker must not cost the run its other figures."""
    pin = run.args.pin_cpu
    planned: dict[str, Callable[[], dict[str, Any]]] = {
        "faust_tuned": lambda: faust_baseline(run, "tuned", pin),
        "faust_tuned_table": lambda: faust_baseline(run, "tuned_table", pin),
    }
    if not run.args.short:
        count = min(surveys, run.args.quix_events)
        planned["quix"] = lambda: quix_baseline(run, count, "sliding", pin)
        planned["quix_tumbling"] = lambda: quix_baseline(run, count, "tumbling", pin)
    peers: dict[str, Any] = {"peer_failures": {}}
    for key, measure in planned.items():
        try:
            peers[key] = measure()
        except BaselineFailed as failure:
            say(f"  {key} failed: {failure}")
            peers["peer_failures"][key] = str(failure)[-2000:]
    return peers


BASELINES = (
    ("raw_consume", "aiokafka consume only"),
    ("raw_orjson", "aiokafka + orjson.loads"),
    ("raw_ceiling", "aiokafka + decode_record"),
    ("faust_tuned", "Faust, tuned, pinned"),
    ("faust_tuned_table", "Faust, tuned, pinned, table write per record"),
    ("naive", "Faust, untuned (defaults)"),
    ("quix", "Quix Streams, survey slice, sliding windows (per survey event)"),
    ("quix_tumbling", "Quix Streams, survey slice, tumbling windows (per survey event)"),
)
"""(results key, label) of everything the worker is compared with."""


def comparison(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Our worker against each baseline in this run: events/s ratio and CPU µs per event."""
    ours = results["pipeline"]
    rows = []
    for key, label in BASELINES:
        if key not in results:
            continue
        theirs = results[key]
        rows.append(
            {
                "baseline": key,
                "label": label,
                "events_per_s": theirs["events_per_s"],
                "cpu_us_per_event": theirs.get("cpu_us_per_event"),
                "worker_vs_baseline": ours["events_per_s"] / theirs["events_per_s"],
                "worker_events_per_s": ours["events_per_s"],
                "worker_cpu_us_per_event": ours["worker_cpu_us_per_event"],
            }
        )
    return rows


def side_stages(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Placement (murmur2 vs round-robin input) and intake (collector vs direct produce), each on
    a broker of its own (or ``--bootstrap``): the main broker already holds millions of records.
    Their code lives in ``bench/placement.py`` and ``bench/collector.py``, runnable alone too."""
    results: dict[str, Any] = {}
    if args.placement_events:
        say(f"placement: murmur2 vs round-robin input, {args.placement_events:,} events each")
        results["placement"] = placement.compare(
            args.bootstrap,
            log_dir,
            events=args.placement_events,
            partitions=args.partitions,
            seed=args.seed,
            history=args.history_seconds,
        )
    if args.intake_events:
        say(f"intake: the collector vs direct produce, {args.intake_events:,} events")
        options = {"repeats": 1, "paced_seconds": 1.0} if args.short else {}
        figures = collector.intake(args.bootstrap, args.intake_events, **options)
        figures.pop("machine", None)  # the run's own machine info covers it
        results["intake"] = figures
    return results


def _ratios(results: dict[str, Any]) -> dict[str, float]:
    pipeline = results["pipeline"]["events_per_s"]
    ceiling, naive = results["raw_ceiling"], results["naive"]
    return {
        "pipeline_vs_consume": pipeline / results["raw_consume"]["events_per_s"],
        "pipeline_vs_ceiling": pipeline / ceiling["events_per_s"],
        "pipeline_vs_naive": pipeline / naive["events_per_s"],
        "ceiling_vs_naive": ceiling["events_per_s"] / naive["events_per_s"],
        "scale_out_vs_one_worker": results["scale_out"]["vs_one_worker"],
        "hostile_vs_clean": results["hostile"]["vs_clean"],
        "pinned_vs_unpinned": results["pipeline_pinned"]["vs_unpinned"],
    }


def _parameters(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "events": args.events,
        "naive_events": results["naive"]["events"] if "naive" in results else None,
        "latency_seconds": args.latency_seconds,
        "latency_load": args.latency_load,
        "latency_rate": results["latency"]["target_events_per_s"],
        "latency_rate_fixed": args.latency_rate is not None,
        "partitions": args.partitions,
        "topics": len(SOURCE_TOPICS),
        "scale_workers": args.scale_workers,
        "garbage_share": args.garbage_share,
        "hostile_events": args.hostile_events,
        "placement_events": args.placement_events,
        "intake_events": args.intake_events,
        "history": format_duration(args.history_seconds),
        "seed": args.seed,
        "flush_interval": args.flush_interval or Settings().flush_interval,
        "session_timeout": 1.0,
        "pin_cpu": args.pin_cpu,
        "peers": not args.no_peers,
        "short": args.short,
        "cost_point": args.cost_point,
        "profiled": args.profile,
        "broker": "external" if args.bootstrap else "embedded Tansu",
    }


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Every stage in order (``--cost-point``: prefill and the one-worker stages only); returns
    the results document (without writing anything)."""
    began = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info()}
    tag = uuid.uuid4().hex[:8]
    with broker(args.bootstrap, log_dir) as (bootstrap, broker_pid):
        stages = Run(args, bootstrap, f"bench{tag}.", tag, log_dir, broker_pid)
        results["prefill"] = prefill(stages)
        if not args.cost_point:
            say("ceilings: aiokafka consume only, + orjson.loads, + decode_record")
            results["raw_consume"] = _raw(stages, "consume")
            results["raw_orjson"] = _raw(stages, "orjson")
            results["raw_ceiling"] = ceiling = _raw(stages, "decode")
            say(f"  ceiling {ceiling['events_per_s']:,.0f} events/s")
        results |= worker_stages(stages)
        if not args.cost_point:
            results["pipeline_pinned"] = pinned_drain(stages, results["pipeline"])
            in_topics = args.events + results["latency"]["events"]
            results["scale_out"] = scale_out(stages, in_topics, results["pipeline"])
            results["naive"] = faust_baseline(stages, "untuned", None)
            if not args.no_peers:
                results |= _peers(stages, results["prefill"]["topics"].get("surveys", 0))
            results["hostile"] = hostile(stages, results["pipeline"])
    if not args.cost_point:
        results |= side_stages(args, log_dir)
        results["ratios"] = _ratios(results)
        results["comparison"] = comparison(results)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["parameters"] = _parameters(args, results)
    results["wall_seconds"] = time.perf_counter() - began
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m bench [options]``: run every stage, write the results, print the table."""
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    args.profile_path = args.out / f"{stamp}.profile.txt"
    budget = broker_records(args)
    if not args.bootstrap and budget > TANSU_RECORD_BUDGET:
        say(
            f"warning: up to ~{budget:,.0f} records in the embedded broker's memory "
            f"(keep below {TANSU_RECORD_BUDGET:,})"
        )
    log_dir = Path(tempfile.mkdtemp(prefix="cx-bench-"))
    try:
        results = run(args, log_dir)
    except Exception as error:
        say(f"failed: {error}\n  logs kept in {log_dir}")
        raise
    if args.keep_logs:
        say(f"logs in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    results = {"timestamp": stamp, "parameters": results.pop("parameters"), **results}
    if args.cost_point:  # a point of the cost curve, not a run to compare stages with
        path = write_results(results, args.out, f"costcurve-{stamp}", latest=False)
        say(f"results: {path}")
        print(cost_point_table(results))
        return 0
    path = write_results(results, args.out, stamp)
    chart = args.out / f"{stamp}.png"
    write_chart(results, chart)
    shutil.copyfile(chart, args.out / "latest.png")
    say(f"results: {path}, chart: {chart}")
    print(markdown_table(results))
    return 0
