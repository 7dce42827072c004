"""One benchmark run: same broker, same data, every stage; see ``bench/__init__.py``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import (
    create_source_topics,
    encode_events,
    mix_of,
    produce_records,
    realistic_events,
)
from bench.naive import run_naive
from bench.profile import Profiler
from bench.report import machine_info, markdown_table, write_chart, write_results
from bench.stages import (
    MB,
    drain_pipeline,
    measure_latency,
    raw_ceiling,
    rss_by_progress,
    scrape_cost,
)
from bench.worker import WorkerProcess
from pipeline.settings import format_duration, parse_duration
from pipeline.topics import SOURCE_TOPICS

__all__ = ["main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TANSU_RECORD_BUDGET = 1_500_000
"""Tansu keeps every record in memory (~1.8 GB after 4M small ones): stay below this."""

SHORT = {
    "events": 5_000,
    "naive_events": 2_000,
    "latency_seconds": 3.0,
    "latency_rate": 1_000.0,
    "history": "2h",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="cx-pipeline benchmark: raw ceiling, pipeline worker, naive Faust baseline, "
        "end-to-end latency and memory, on one broker with one data set.",
    )
    parser.add_argument("--events", type=int, default=300_000, help="prefilled events (300000)")
    parser.add_argument(
        "--naive-events",
        type=int,
        default=30_000,
        help="events the Faust baseline is timed on (30000; it runs at a few k/s)",
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=20.0, help="paced-producer duration (20)"
    )
    parser.add_argument(
        "--latency-load",
        type=float,
        default=0.5,
        help="latency-stage rate as a fraction of the measured pipeline maximum (0.5)",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="latency-stage rate in events/s (overrides --latency-load)",
    )
    parser.add_argument(
        "--latency-poll",
        type=float,
        default=0.1,
        help="/metrics poll interval of the latency stage (0.1; each scrape costs the worker CPU, "
        "see pipeline.scrape_cpu_ms)",
    )
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (8)")
    parser.add_argument(
        "--history",
        default="20h",
        help="simulated shop traffic the events are taken from, ending now; within the 24 h "
        "window so none is late (20h: shipments and resolutions are in the mix)",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (1)")
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=None,
        help="CX_FLUSH_INTERVAL of the worker (default: the pipeline's default)",
    )
    parser.add_argument(
        "--bootstrap", help="use this Kafka/Tansu broker instead of starting an embedded one"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument(
        "--short",
        action="store_true",
        help="CI smoke run: 5000 events, Faust on 2000, 3 s latency; proves nothing about speed",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the worker with py-spy during the drain (<stamp>.profile.txt)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep broker/worker/Faust logs")
    args = parser.parse_args(argv)
    if args.short:
        for name, value in SHORT.items():
            if parser.get_default(name) == getattr(args, name):
                setattr(args, name, value)
    args.history_seconds = parse_duration(args.history)
    if not 0 < args.history_seconds < 86400:
        parser.error("--history must be between 0 and 24h (the longest window)")
    if args.events < 1000:
        parser.error("--events must be at least 1000")
    if not 0 < args.latency_load <= 1:
        parser.error("--latency-load must be in (0, 1]")
    return args


@contextlib.contextmanager
def _broker(bootstrap: str | None, log_dir: Path) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, pid of the embedded broker or None for an external one)."""
    if bootstrap:
        yield bootstrap, None
        return
    from pipeline.broker import EmbeddedBroker

    with EmbeddedBroker(log_path=log_dir / "tansu.log") as broker:
        yield broker.bootstrap, broker.pid


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class _Run:
    """What the stages share: options, broker, topic prefix, logs."""

    args: argparse.Namespace
    bootstrap: str
    prefix: str
    tag: str
    log_dir: Path
    broker_pid: int | None

    @property
    def partitions(self) -> int:
        return self.args.partitions


def _prefill(run: _Run) -> dict[str, Any]:
    args = run.args
    _say(f"generating {args.events:,} events from {args.history} of simulated traffic")
    began = time.perf_counter()
    events = realistic_events(
        args.events, seed=args.seed, history=args.history_seconds, now=time.time()
    )
    records = encode_events(events, run.partitions)
    figures: dict[str, Any] = {
        "events": len(records),
        "generate_seconds": time.perf_counter() - began,
        "bytes_mean": sum(len(r.value) for r in records) / len(records),
        **mix_of(events),
    }
    asyncio.run(create_source_topics(run.bootstrap, run.prefix, run.partitions))
    _say(f"producing {len(records):,} records to {run.prefix}{{{','.join(SOURCE_TOPICS)}}}")
    seconds = asyncio.run(produce_records(run.bootstrap, run.prefix, records))
    return figures | {"produce_seconds": seconds, "produce_events_per_s": len(records) / seconds}


def _raw(run: _Run, *, validate: bool) -> dict[str, float]:
    return asyncio.run(
        raw_ceiling(run.bootstrap, run.prefix, run.args.events, validate=validate, timeout=300)
    )


def _worker_stages(run: _Run, flush_interval: float | None) -> dict[str, Any]:
    """Pipeline drain, scrape cost, latency and memory, all on one worker process."""
    args = run.args
    settings = {} if flush_interval is None else {"flush_interval": str(flush_interval)}
    worker = WorkerProcess(
        bootstrap=run.bootstrap,
        prefix=run.prefix,
        app_id=f"bench-{run.tag}",
        log_path=run.log_dir / "worker.log",
        source_partitions=str(run.partitions),
        **settings,
    )
    profiler = Profiler(args.profile_path) if args.profile else None
    results: dict[str, Any] = {}
    try:
        _say("pipeline: a fresh worker drains the topics from the beginning")
        pipeline, samples = drain_pipeline(
            worker,
            args.events,
            partitions=run.partitions * len(SOURCE_TOPICS),
            timeout=max(120.0, args.events / 1000),
            profiler=profiler,
            broker_pid=run.broker_pid,
        )
        results["pipeline"] = pipeline
        _say(
            f"  pipeline {pipeline['events_per_s']:,.0f} events/s "
            f"(startup {pipeline['startup_seconds']:.1f} s)"
        )
        pipeline |= scrape_cost(worker)
        rss_after_drain = worker.rss()
        rate = args.latency_rate or args.latency_load * pipeline["events_per_s"]
        latency_events = realistic_events(
            int(rate * args.latency_seconds) + 1,
            seed=args.seed + 1,
            history=args.history_seconds,
            now=time.time(),
        )
        _say(f"latency: {rate:,.0f} events/s for {args.latency_seconds:g} s")
        latency = asyncio.run(
            measure_latency(
                worker,
                bootstrap=run.bootstrap,
                prefix=run.prefix,
                events=latency_events,
                rate=rate,
                seconds=args.latency_seconds,
                partitions=run.partitions,
                poll=args.latency_poll,
                broker_pid=run.broker_pid,
            )
        )
        results["latency"] = latency
        _say(f"  p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms")
        rss_after_latency = worker.rss()
    finally:
        worker.stop()
    step = max(1, len(samples) // 200)
    results["memory"] = {
        "rss_after_drain_mb": rss_after_drain / MB,
        "rss_after_latency_mb": rss_after_latency / MB,
        "events_after_latency": args.events + latency["events"],
        "rss_first_sample_mb": samples[0].rss / MB,
        "rss_by_progress": rss_by_progress(samples, args.events),
        "rss_curve": [
            {"seconds": round(s.seconds, 2), "events": s.events, "rss_mb": round(s.rss / MB, 1)}
            for s in samples[::step]
        ],
    }
    if profiler is not None:
        results["profile"] = {"raw_file": args.profile_path.name, **(profiler.summary or {})}
    return results


def _naive(run: _Run) -> dict[str, float]:
    count = min(run.args.naive_events, run.args.events)
    _say(f"naive baseline: a Faust agent validating {count:,} events")
    naive = run_naive(
        bootstrap=run.bootstrap,
        prefix=run.prefix,
        app_id=f"bench-naive-{run.tag}",
        count=count,
        timeout=max(90.0, count / 500),
        log_path=run.log_dir / "faust.log",
    )
    naive["extrapolated_seconds_for_all"] = run.args.events / naive["events_per_s"]
    _say(f"  naive {naive['events_per_s']:,.0f} events/s")
    return naive


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Every stage in order; returns the results document (without writing anything)."""
    from pipeline.settings import Settings

    began = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info()}
    tag = uuid.uuid4().hex[:8]
    with _broker(args.bootstrap, log_dir) as (bootstrap, broker_pid):
        stages = _Run(args, bootstrap, f"bench{tag}.", tag, log_dir, broker_pid)
        results["prefill"] = _prefill(stages)
        _say("raw ceiling: aiokafka consume only, then consume + decode_record")
        results["raw_consume"] = _raw(stages, validate=False)
        results["raw_ceiling"] = ceiling = _raw(stages, validate=True)
        _say(f"  ceiling {ceiling['events_per_s']:,.0f} events/s")
        results |= _worker_stages(stages, args.flush_interval)
        results["naive"] = naive = _naive(stages)
    pipeline = results["pipeline"]["events_per_s"]
    results["ratios"] = {
        "pipeline_vs_ceiling": pipeline / ceiling["events_per_s"],
        "pipeline_vs_naive": pipeline / naive["events_per_s"],
        "ceiling_vs_naive": ceiling["events_per_s"] / naive["events_per_s"],
    }
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["parameters"] = {
        "events": args.events,
        "naive_events": naive["events"],
        "latency_seconds": args.latency_seconds,
        "latency_load": args.latency_load,
        "latency_rate": results["latency"]["target_events_per_s"],
        "latency_rate_fixed": args.latency_rate is not None,
        "partitions": args.partitions,
        "topics": len(SOURCE_TOPICS),
        "history": format_duration(args.history_seconds),
        "seed": args.seed,
        "flush_interval": args.flush_interval or Settings().flush_interval,
        "session_timeout": 1.0,
        "short": args.short,
        "profiled": args.profile,
        "broker": "external" if args.bootstrap else "embedded Tansu",
    }
    results["wall_seconds"] = time.perf_counter() - began
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m bench [options]``: run every stage, write the results, print the table."""
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    args.profile_path = args.out / f"{stamp}.profile.txt"
    budget = args.events + args.latency_load * 100_000 * args.latency_seconds
    if not args.bootstrap and budget > TANSU_RECORD_BUDGET:
        _say(
            f"warning: up to ~{budget:,.0f} records in the embedded broker's memory "
            f"(keep below {TANSU_RECORD_BUDGET:,})"
        )
    log_dir = Path(tempfile.mkdtemp(prefix="cx-bench-"))
    try:
        results = run(args, log_dir)
    except Exception as error:
        _say(f"failed: {error}\n  logs kept in {log_dir}")
        raise
    if args.keep_logs:
        _say(f"logs in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    results = {"timestamp": stamp, "parameters": results.pop("parameters"), **results}
    path = write_results(results, args.out, stamp)
    chart = args.out / f"{stamp}.png"
    write_chart(results, chart)
    shutil.copyfile(chart, args.out / "latest.png")
    _say(f"results: {path}, chart: {chart}")
    print(markdown_table(results))
    return 0
