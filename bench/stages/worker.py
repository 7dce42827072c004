"""Prefill and the stages on the one worker process of a run: drain, scrape cost, latency,
memory; and the same drain by a worker pinned to one core."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.data import (
    create_source_topics,
    encode_events,
    mix_of,
    partition_distribution,
    produce_records,
    realistic_events,
)
from bench.harness import MB, say
from bench.harness.context import Run
from bench.profile import Profiler
from bench.stages.drain import drain_pipeline, rss_by_progress, scrape_cost
from bench.stages.latency import PacedLoad, measure_broker_hop, measure_latency
from pipeline.kafka.topics import SOURCE_TOPICS

__all__ = ["pinned_drain", "prefill", "worker_stages"]


def prefill(run: Run) -> dict[str, Any]:
    args = run.args
    say(f"generating {args.events:,} events from {args.history} of simulated traffic")
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
    say(f"producing {len(records):,} records to {run.prefix}{{{','.join(SOURCE_TOPICS)}}}")
    seconds = asyncio.run(produce_records(run.bootstrap, run.prefix, records))
    return figures | {"produce_seconds": seconds, "produce_events_per_s": len(records) / seconds}


def worker_stages(run: Run) -> dict[str, Any]:
    """Pipeline drain, scrape cost, latency and memory, all on one worker process."""
    args = run.args
    worker = run.worker("", "worker")
    profiler = Profiler(args.profile_path) if args.profile else None
    results: dict[str, Any] = {}
    try:
        say("pipeline: a fresh worker drains the topics from the beginning")
        pipeline, samples = drain_pipeline(
            [worker],
            args.events,
            partitions=run.source_partitions,
            timeout=run.drain_timeout(args.events),
            profiler=profiler,
            broker_pid=run.broker_pid,
        )
        results["pipeline"] = pipeline
        say(
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
        load = PacedLoad(
            bootstrap=run.bootstrap,
            prefix=run.prefix,
            events=latency_events,
            rate=rate,
            seconds=args.latency_seconds,
            partitions=run.partitions,
        )
        say(f"latency: {rate:,.0f} events/s for {args.latency_seconds:g} s")
        latency = asyncio.run(
            measure_latency(worker, load, poll=args.latency_poll, broker_pid=run.broker_pid)
        )
        results["latency"] = latency
        say(f"  p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms")
        rss_after_latency = worker.rss()
    finally:
        worker.stop()
    say("broker hop: the same sends to fresh topics, read by a bare consumer (no worker)")
    hop = asyncio.run(measure_broker_hop(load))
    results["broker_hop"] = hop
    say(f"  p50 {hop['p50_ms']:.0f} ms, p99 {hop['p99_ms']:.0f} ms")
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


def pinned_drain(run: Run, one_worker: dict[str, Any]) -> dict[str, Any]:
    """A fresh worker under ``taskset -c --pin-cpu`` drains the prefill, as the tuned Faust
    agents run: does pinning help our single-threaded worker too?"""
    args = run.args
    worker = run.worker("-pinned", "pinned", pin=args.pin_cpu)
    say(f"pinned: a fresh worker on CPU {args.pin_cpu} drains the topics from the beginning")
    try:
        figures, _ = drain_pipeline(
            [worker],
            args.events,
            partitions=run.source_partitions,
            timeout=run.drain_timeout(args.events),
            broker_pid=run.broker_pid,
        )
    finally:
        worker.stop()
    figures["pinned_cpu"] = args.pin_cpu
    figures["vs_unpinned"] = figures["events_per_s"] / one_worker["events_per_s"]
    say(
        f"  pinned {figures['events_per_s']:,.0f} events/s ({figures['vs_unpinned']:.2f}x unpinned)"
    )
    return figures
