"""Scale-out: n workers in one consumer group drain the same topics, and the part of their work
that adding workers does not divide (every worker folds every checkpoint into its own view) is
priced by folding the group's checkpoint log once (see :func:`scale_model`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import MB, frozen_heap, read_log, say
from bench.harness.context import Run
from bench.stages.drain import drain_pipeline
from pipeline.aggregates.windows import window_specs
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.view import View
from pipeline.kafka.topics import checkpoint_topic
from pipeline.settings import Settings

__all__ = ["scale_model", "scale_out", "view_fold_cost"]


def view_fold_cost(checkpoints: Sequence[bytes], events: float) -> dict[str, float]:
    """CPU to fold a drain's checkpoint log into a fresh whole-shop view, as a worker's view does.

    Every worker tails the WHOLE log (replicated stage 2: any worker exports complete numbers),
    so this cost is paid once per worker for every event of the shop: the part of the work that
    adding workers does not divide. Decoded ``for_view`` and applied as the worker's view loop
    does (without its expiry and recovery index). The harness's own heap is frozen out of the
    GC first so that its millions of prefill objects do not bill the fold.
    """
    view = View(window_specs(Settings().window_seconds))
    with frozen_heap():
        began = time.process_time()
        for value in checkpoints:
            view.apply(Checkpoint.decode(value, for_view=True))
        seconds = time.process_time() - began
    return {
        "checkpoints": len(checkpoints),
        "checkpoints_applied": view.applied,
        "checkpoint_bytes": sum(len(value) for value in checkpoints),
        "view_fold_cpu_seconds": seconds,
        "view_fold_us_per_event": seconds / events * 1e6,
    }


def scale_model(
    one_worker_us: float, view_us: float, workers: int, max_partition_share: float
) -> dict[str, float]:
    """What the partition model predicts for ``workers`` workers, each on its own core.

    One worker spends ``one_worker_us`` of CPU per event: ingest (split between the workers of
    the group, by partition) plus the view fold ``view_us`` (every worker, every event). So each
    of n workers spends ingest / n + view per event of the shop, and the speed-up is
    one_worker / (ingest / n + view); with unboundedly many it tends to one_worker / view, and
    the hottest partition (one worker's at least) caps ingest at 1 / max_partition_share.
    """
    ingest_us = max(0.0, one_worker_us - view_us)
    return {
        "ingest_us_per_event": ingest_us,
        "model_ratio": one_worker_us / (ingest_us / workers + view_us),
        "view_bound_ratio": one_worker_us / view_us if view_us > 0 else math.inf,
        "partition_bound_ratio": 1 / max_partition_share,
    }


def scale_out(run: Run, expected: int, one_worker: dict[str, Any]) -> dict[str, Any]:
    """``--scale-workers`` workers in one consumer group drain the same topics (prefill and the
    latency stage's events), then their checkpoint log is folded once to price the view."""
    count, app = run.args.scale_workers, f"-x{run.args.scale_workers}"
    workers = [run.worker(app, f"scale-{index}") for index in range(count)]
    say(f"scale-out: {count} workers in one group drain the same {expected:,} events")
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
    say(
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
    say(
        f"  view fold {fold['view_fold_us_per_event']:.1f} us/event on every worker; "
        f"model {model['model_ratio']:.2f}x"
    )
    return figures | fold | model
