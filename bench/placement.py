"""What misplaced records cost: the same events placed by murmur2 and round-robin, one run.

    python -m bench.placement [--events 200000] [--partitions 4] [--bootstrap host:port]

Each placement gets its own topics and a fresh worker that drains them from the beginning
(:func:`bench.stages.drain_pipeline`, the main benchmark's measurement). With murmur2 every
record is home; with round-robin (kafka-go's default, keys ignored) about (n-1)/n of them land
elsewhere and are forwarded through the repartition topic, i.e. produced and consumed twice.
Reports events/s and worker CPU µs per event for both, and their ratio (target: at most 1.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.data import (
    BenchRecord,
    create_source_topics,
    encode_events,
    produce_records,
    realistic_events,
)
from bench.harness.broker import broker as _broker
from bench.stages.drain import drain_pipeline
from bench.worker import WorkerProcess, worker_env
from pipeline.kafka.topics import SOURCE_TOPICS
from pipeline.settings import parse_duration

__all__ = ["TARGET_RATIO", "compare", "main", "report"]

TARGET_RATIO = 1.5


def round_robin(records: list[BenchRecord], partitions: int) -> list[BenchRecord]:
    """The same records, partition by partition in turn per topic, keys ignored."""
    turns = dict.fromkeys(SOURCE_TOPICS, 0)
    placed = []
    for record in records:
        turn = turns[record.topic]
        turns[record.topic] = turn + 1
        placed.append(dataclasses.replace(record, partition=turn % partitions))
    return placed


def misplaced_share(placed: list[BenchRecord], home: list[BenchRecord]) -> float:
    return sum(p.partition != h.partition for p, h in zip(placed, home, strict=True)) / len(home)


def measure(
    bootstrap: str, records: list[BenchRecord], partitions: int, log_dir: Path, name: str
) -> dict[str, Any]:
    """Produce ``records`` to fresh topics, then time a fresh worker draining them."""
    tag = uuid.uuid4().hex[:6]
    prefix = f"bp{tag}."
    asyncio.run(create_source_topics(bootstrap, prefix, partitions))
    asyncio.run(produce_records(bootstrap, prefix, records))
    env = worker_env(
        bootstrap=bootstrap,
        prefix=prefix,
        app_id=f"bench-placement-{tag}",
        source_partitions=str(partitions),
    )
    worker = WorkerProcess(env, log_dir / f"{name}.log")
    try:
        figures, _ = drain_pipeline(
            [worker],
            len(records),
            partitions=partitions * len(SOURCE_TOPICS),
            timeout=max(300.0, len(records) / 500),
        )
        misplaced = sum(
            value
            for (metric, _), value in worker.samples().items()
            if metric == "cx_events_misplaced_total"
        )
    finally:
        worker.stop()
    return {
        "events_per_s": figures["events_per_s"],
        "worker_cpu_us_per_event": figures["worker_cpu_us_per_event"],
        "misplaced_counted": misplaced,
        "steady_measured": figures["steady_measured"],
    }


def compare(
    bootstrap: str | None,
    log_dir: Path,
    *,
    events: int,
    partitions: int,
    seed: int,
    history: float,
) -> dict[str, Any]:
    """Both placements of the same ``events`` realistic events, each drained by a fresh worker,
    on ``bootstrap`` or a fresh embedded broker (``python -m bench`` runs it this way too)."""
    simulated = realistic_events(events, seed=seed, history=history, now=time.time())
    home = encode_events(simulated, partitions)
    placements = {"murmur2": home, "round_robin": round_robin(home, partitions)}
    results: dict[str, Any] = {"events": len(home), "partitions": partitions}
    with _broker(bootstrap, log_dir) as (address, _):
        for name, records in placements.items():
            print(f"[placement] {name}: draining {len(records):,} events", file=sys.stderr)
            results[name] = measure(address, records, partitions, log_dir, name)
            results[name]["misplaced_share"] = misplaced_share(records, home)
    murmur2, scattered = results["murmur2"], results["round_robin"]
    ratio = scattered["worker_cpu_us_per_event"] / murmur2["worker_cpu_us_per_event"]
    results["cpu_per_event_ratio"] = ratio
    results["throughput_ratio"] = murmur2["events_per_s"] / scattered["events_per_s"]
    results["within_target"] = ratio <= TARGET_RATIO
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{results['events']:,} events, {results['partitions']} partitions per topic",
        "| placement | misplaced | events/s | worker CPU µs/event |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("murmur2", "round_robin"):
        row = results[name]
        lines.append(
            f"| {name} | {row['misplaced_share']:.0%} | {row['events_per_s']:,.0f} | "
            f"{row['worker_cpu_us_per_event']:.1f} |"
        )
    lines.append(
        f"round-robin / murmur2: {results['cpu_per_event_ratio']:.2f}x CPU per event "
        f"(target <= {TARGET_RATIO}x), {results['throughput_ratio']:.2f}x time per event"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.placement", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--history", default="20h", help="simulated traffic the events span")
    parser.add_argument("--bootstrap", help="an existing broker instead of an embedded one")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-placement-") as logs:
        results = compare(
            args.bootstrap,
            Path(logs),
            events=args.events,
            partitions=args.partitions,
            seed=args.seed,
            history=parse_duration(args.history),
        )
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if results["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
