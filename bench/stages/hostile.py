"""Hostile input: the prefilled events with garbage interleaved on every partition, on a topic
prefix of their own, drained by a fresh worker: its speed against the clean drain, and whether
it rejected (and dead-lettered) exactly the garbage, reason by reason."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.data import HostileMix, create_source_topics, mix_garbage, produce_records
from bench.harness import say
from bench.harness.context import Run
from bench.stages.drain import counted_records, drain_pipeline
from bench.worker import Samples

__all__ = ["hostile"]


def _rejected_by_reason(samples: Samples) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for (name, labels), value in samples.items():
        if name == "cx_events_rejected_total":
            reason = dict(labels)["reason"]
            reasons[reason] = reasons.get(reason, 0) + int(value)
    return dict(sorted(reasons.items(), key=lambda item: -item[1]))


def hostile(run: Run, clean: dict[str, Any]) -> dict[str, Any]:
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
    say(f"hostile: {args.hostile_events:,} events + {mix.garbage:,} garbage records to {prefix}")
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
    say(f"  {hostile['records_per_s']:,.0f} records/s ({hostile['vs_clean']:.2f}x clean)")
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
