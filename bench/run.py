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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import (
    BenchRecord,
    HostileMix,
    create_source_topics,
    encode_events,
    mix_garbage,
    mix_of,
    partition_distribution,
    produce_records,
    realistic_events,
)
from bench.naive import run_naive
from bench.profile import Profiler
from bench.report import machine_info, markdown_table, write_chart, write_results
from bench.stages import (
    MB,
    counted_records,
    drain_pipeline,
    measure_latency,
    raw_ceiling,
    read_log,
    rss_by_progress,
    scale_model,
    scrape_cost,
    view_fold_cost,
)
from bench.worker import Samples, WorkerProcess, worker_env
from pipeline.kafka.topics import SOURCE_TOPICS, checkpoint_topic
from pipeline.settings import Settings, format_duration, parse_duration

__all__ = ["main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TANSU_RECORD_BUDGET = 3_000_000
"""Tansu keeps every record in memory (~1.8 GB after 4M small ones): stay below this."""
LATENCY_RATE_GUESS = 50_000
"""events/s the budget assumes for the latency stage's load (the pipeline stays below the
raw ceiling, ~50k/s)."""

SHORT = {
    "events": 5_000,
    "naive_events": 2_000,
    "latency_seconds": 3.0,
    "latency_rate": 1_000.0,
    "history": "2h",
}


NUMBERS: tuple[tuple[str, type, float | int | None, str], ...] = (
    ("--events", int, 1_000_000, "prefilled events"),
    ("--naive-events", int, 30_000, "events the Faust baseline is timed on (it runs at a few k/s)"),
    ("--latency-seconds", float, 20.0, "paced-producer duration"),
    ("--latency-load", float, 0.5, "latency-stage rate as a fraction of the pipeline's maximum"),
    ("--latency-rate", float, None, "latency-stage events/s (default: from --latency-load)"),
    ("--latency-poll", float, 0.1, "latency-stage /metrics poll interval (a scrape costs CPU)"),
    ("--partitions", int, 8, "partitions per topic"),
    ("--scale-workers", int, 2, "workers of the scale-out stage, one consumer group"),
    ("--garbage-share", float, 0.1, "share of hostile records in the hostile stage's mix"),
    ("--hostile-events", int, None, "valid events of the hostile stage (default: all)"),
    ("--seed", int, 1, "simulator seed"),
    ("--flush-interval", float, None, "the workers' CX_FLUSH_INTERVAL (default: the pipeline's)"),
)
"""The numeric options: (flag, type, default, help); the help of a None default says what."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="cx-pipeline benchmark: raw ceiling, pipeline worker, two workers in one "
        "group, hostile input, naive Faust baseline, end-to-end latency and memory, on one "
        "broker with one data set.",
    )
    for flag, kind, default, text in NUMBERS:
        shown = "" if default is None else f" ({default:,})"
        parser.add_argument(flag, type=kind, default=default, help=text + shown)
    parser.add_argument(
        "--history",
        default="20h",
        help="simulated shop traffic the events are taken from, ending now; within the 24 h "
        "window so none is late (20h: shipments and resolutions are in the mix)",
    )
    parser.add_argument(
        "--bootstrap", help="use this Kafka/Tansu broker instead of starting an embedded one"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument(
        "--short",
        action="store_true",
        help="CI smoke run: 5000 events, Faust on 2000, 3 s latency; every stage, proves "
        "nothing about speed",
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
    if args.scale_workers < 2:
        parser.error("--scale-workers must be at least 2")
    if not 0 < args.garbage_share <= 0.5:
        parser.error("--garbage-share must be in (0, 0.5]")
    args.hostile_events = min(args.hostile_events or args.events, args.events)
    return args


@contextlib.contextmanager
def _broker(bootstrap: str | None, log_dir: Path) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, pid of the embedded broker or None for an external one)."""
    if bootstrap:
        yield bootstrap, None
        return
    from pipeline.kafka.broker import EmbeddedBroker

    with EmbeddedBroker(log_path=log_dir / "tansu.log") as broker:
        yield broker.bootstrap, broker.pid


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class _Run:
    """What the stages share: options, broker, topic prefix, logs, the prefilled records."""

    args: argparse.Namespace
    bootstrap: str
    prefix: str
    tag: str
    log_dir: Path
    broker_pid: int | None
    records: list[BenchRecord] = field(default_factory=list)
    partitioning: dict[str, Any] = field(default_factory=dict)
    """Records per source partition of the prefill (see :func:`partition_distribution`)."""

    @property
    def partitions(self) -> int:
        return self.args.partitions

    @property
    def source_partitions(self) -> int:
        """Partitions a group of workers shares: the unit of scale-out."""
        return self.partitions * len(SOURCE_TOPICS)

    def worker(self, app: str, log: str, prefix: str | None = None) -> WorkerProcess:
        """A worker of app id ``bench-<tag><app>`` (its consumer group), not yet started."""
        settings = {"source_partitions": str(self.partitions)}
        if self.args.flush_interval is not None:
            settings["flush_interval"] = str(self.args.flush_interval)
        env = worker_env(
            bootstrap=self.bootstrap,
            prefix=prefix or self.prefix,
            app_id=f"bench-{self.tag}{app}",
            **settings,
        )
        return WorkerProcess(env, self.log_dir / f"{log}.log")

    def drain_timeout(self, records: int) -> float:
        return max(120.0, records / 1000)


def _prefill(run: _Run) -> dict[str, Any]:
    args = run.args
    _say(f"generating {args.events:,} events from {args.history} of simulated traffic")
    began = time.perf_counter()
    events = realistic_events(
        args.events, seed=args.seed, history=args.history_seconds, now=time.time()
    )
    run.records = records = encode_events(events, run.partitions)
    run.partitioning = partition_distribution(records, run.partitions)
    figures: dict[str, Any] = {
        "events": len(records),
        "generate_seconds": time.perf_counter() - began,
        "bytes_mean": sum(len(r.value) for r in records) / len(records),
        **mix_of(events),
        "partitioning": run.partitioning,
    }
    asyncio.run(create_source_topics(run.bootstrap, run.prefix, run.partitions))
    _say(f"producing {len(records):,} records to {run.prefix}{{{','.join(SOURCE_TOPICS)}}}")
    seconds = asyncio.run(produce_records(run.bootstrap, run.prefix, records))
    return figures | {"produce_seconds": seconds, "produce_events_per_s": len(records) / seconds}


def _raw(run: _Run, *, validate: bool) -> dict[str, float]:
    return asyncio.run(
        raw_ceiling(run.bootstrap, run.prefix, run.args.events, validate=validate, timeout=300)
    )


def _worker_stages(run: _Run) -> dict[str, Any]:
    """Pipeline drain, scrape cost, latency and memory, all on one worker process."""
    args = run.args
    worker = run.worker("", "worker")
    profiler = Profiler(args.profile_path) if args.profile else None
    results: dict[str, Any] = {}
    try:
        _say("pipeline: a fresh worker drains the topics from the beginning")
        pipeline, samples = drain_pipeline(
            [worker],
            args.events,
            partitions=run.source_partitions,
            timeout=run.drain_timeout(args.events),
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


def _scale_out(run: _Run, expected: int, one_worker: dict[str, Any]) -> dict[str, Any]:
    """``--scale-workers`` workers in one consumer group drain the same topics (prefill and the
    latency stage's events), then their checkpoint log is folded once to price the view."""
    count, app = run.args.scale_workers, f"-x{run.args.scale_workers}"
    workers = [run.worker(app, f"scale-{index}") for index in range(count)]
    _say(f"scale-out: {count} workers in one group drain the same {expected:,} events")
    try:
        figures, _ = drain_pipeline(
            workers,
            expected,
            partitions=run.source_partitions,
            timeout=run.drain_timeout(expected),
            broker_pid=run.broker_pid,
        )
        figures["rss_after_drain_mb"] = [worker.rss() / MB for worker in workers]
        figures["cpu_seconds_since_start"] = [worker.cpu_seconds() for worker in workers]
    finally:
        for worker in workers:
            worker.stop()
    figures["vs_one_worker"] = figures["events_per_s"] / one_worker["events_per_s"]
    _say(
        f"  {count} workers {figures['events_per_s']:,.0f} events/s ({figures['vs_one_worker']:.2f}x)"
    )
    log = checkpoint_topic(Settings(app_id=f"bench-{run.tag}{app}"))
    fold = view_fold_cost(asyncio.run(read_log(run.bootstrap, log)), expected)
    model = scale_model(
        one_worker["worker_cpu_us_per_event"],
        fold["view_fold_us_per_event"],
        count,
        run.partitioning["max_partition_share"],
    )
    _say(
        f"  view fold {fold['view_fold_us_per_event']:.1f} us/event on every worker; "
        f"model {model['model_ratio']:.2f}x"
    )
    return figures | fold | model


def _rejected_by_reason(samples: Samples) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for (name, labels), value in samples.items():
        if name == "cx_events_rejected_total":
            reason = dict(labels)["reason"]
            reasons[reason] = reasons.get(reason, 0) + int(value)
    return dict(sorted(reasons.items(), key=lambda item: -item[1]))


def _hostile(run: _Run, clean: dict[str, Any]) -> dict[str, Any]:
    """The first ``--hostile-events`` prefilled events with garbage interleaved, on a topic prefix
    of their own, drained by a fresh worker: records/s against the clean drain's events/s."""
    args = run.args
    mix = mix_garbage(
        run.records[: args.hostile_events],
        share=args.garbage_share,
        seed=args.seed,
        now=time.time(),
    )
    prefix = f"bench{run.tag}h."
    asyncio.run(create_source_topics(run.bootstrap, prefix, run.partitions))
    _say(f"hostile: {args.hostile_events:,} events + {mix.garbage:,} garbage records to {prefix}")
    asyncio.run(produce_records(run.bootstrap, prefix, mix.records))
    worker = run.worker("-hostile", "hostile", prefix=prefix)
    try:
        figures, _ = drain_pipeline(
            [worker],
            len(mix.records),
            partitions=run.source_partitions,
            progress=counted_records,
            timeout=run.drain_timeout(len(mix.records)),
            broker_pid=run.broker_pid,
        )
        samples = worker.samples()
    finally:
        worker.stop()
    hostile = _hostile_figures(mix, figures, samples, clean["events_per_s"])
    _say(f"  {hostile['records_per_s']:,.0f} records/s ({hostile['vs_clean']:.2f}x clean)")
    return hostile


def _hostile_figures(
    mix: HostileMix, drain: dict[str, Any], samples: Samples, clean_rate: float
) -> dict[str, Any]:
    """The drain's figures in records, and whether the worker rejected exactly the garbage."""
    drain = dict(drain)
    rate, records = drain.pop("events_per_s"), drain.pop("events")
    valid = records - mix.garbage
    reasons = _rejected_by_reason(samples)
    dead_letters = samples.get(("cx_pipeline_dead_letters_total", frozenset()), 0.0)
    return {
        "records": records,
        "valid_events": valid,
        "garbage": mix.garbage,
        "garbage_share": mix.garbage / records,
        "records_per_s": rate,
        "valid_events_per_s": rate * valid / records,
        "vs_clean": rate / clean_rate,
        "dead_letters": dead_letters,
        "garbage_reasons": mix.reasons,
        "rejected_reasons": reasons,
        "rejected_matches_garbage": drain["rejected"] == mix.garbage == dead_letters
        and reasons == mix.reasons,
        **drain,
    }


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
        results |= _worker_stages(stages)
        in_topics = args.events + results["latency"]["events"]
        results["scale_out"] = _scale_out(stages, in_topics, results["pipeline"])
        results["naive"] = naive = _naive(stages)
        results["hostile"] = _hostile(stages, results["pipeline"])
    pipeline = results["pipeline"]["events_per_s"]
    results["ratios"] = {
        "pipeline_vs_ceiling": pipeline / ceiling["events_per_s"],
        "pipeline_vs_naive": pipeline / naive["events_per_s"],
        "ceiling_vs_naive": ceiling["events_per_s"] / naive["events_per_s"],
        "scale_out_vs_one_worker": results["scale_out"]["vs_one_worker"],
        "hostile_vs_clean": results["hostile"]["vs_clean"],
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
        "scale_workers": args.scale_workers,
        "garbage_share": args.garbage_share,
        "hostile_events": args.hostile_events,
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


def _broker_records(args: argparse.Namespace) -> float:
    """Records the embedded broker will hold: prefill, latency stage, hostile mix and its dead
    letters (checkpoints and links are a few per partition and flush)."""
    latency = args.latency_rate or args.latency_load * LATENCY_RATE_GUESS
    hostile = args.hostile_events / (1 - args.garbage_share)
    return args.events + latency * args.latency_seconds + hostile + hostile * args.garbage_share


def main(argv: list[str] | None = None) -> int:
    """``python -m bench [options]``: run every stage, write the results, print the table."""
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    args.profile_path = args.out / f"{stamp}.profile.txt"
    budget = _broker_records(args)
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
