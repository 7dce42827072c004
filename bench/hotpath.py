"""Stage 1 and the view without Kafka: CPU per event of each part of the worker's hot path.

The full benchmark needs a broker, a worker subprocess and minutes; an optimisation needs a
before/after figure in seconds, measured on the same data. This feeds the benchmark's realistic
events straight into :class:`~pipeline.engine.partition.PartitionProcessor` objects (one per
source partition, as a worker owning them all has), cuts and encodes a checkpoint per partition
every ``--flush-every`` events (the worker flushes every 0.5 s, ~20k events at its speed), and
folds every checkpoint into a :class:`~pipeline.engine.view.View` as the view loop does. Each
part is timed with ``time.process_time``:

* ``decode``: ``schemas.decode_record`` alone over every record (the validation share);
* ``process``: ``PartitionProcessor.process`` (decode + dedupe + domain logic);
* ``checkpoint``: ``take_checkpoint`` + ``Checkpoint.encode``;
* ``view``: ``Checkpoint.decode(for_view=True)`` + ``View.apply``.

Run ``python -m bench.hotpath --events 200000`` (``--profile`` adds a cProfile table). No
broker, no aiokafka: what this leaves out (fetching, producing, scrapes) the full run measures.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

from bench.data import encode_events, realistic_events
from bench.harness import frozen_heap
from pipeline.aggregates.windows import window_specs
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from pipeline.settings import Settings
from pipeline.worker import gc_policy
from pipeline.worker.handlers import make_handler
from schemas import decode_record

__all__ = ["main", "measure"]


def _timed(work: Callable[[], Any]) -> float:
    began = time.process_time()
    work()
    return time.process_time() - began


def measure(events: int, *, partitions: int, flush_every: int, seed: int) -> dict[str, float]:
    """CPU µs per event of each hot-path part over ``events`` realistic events."""
    now = time.time()
    settings = Settings()
    records = encode_events(
        realistic_events(events, seed=seed, history=20 * 3600, now=now), partitions
    )
    processors: dict[tuple[str, int], PartitionProcessor] = {}
    for topic in ("carts", "orders", "tickets", "surveys"):
        for partition in range(partitions):
            processors[(topic, partition)] = PartitionProcessor(
                topic=topic,
                topic_name=f"cx.{topic}",
                partition=partition,
                handler=make_handler(topic, settings),
                settings=settings,
            )
    offsets = dict.fromkeys(processors, 0)
    view = View(window_specs(settings.window_seconds))
    encoded: list[bytes] = []

    def decode_only() -> None:
        for record in records:  # realistic events are all valid: nothing is rejected
            decode_record(record.topic, record.key, record.value, now=now)

    def fold() -> None:
        for value in encoded:
            view.apply(Checkpoint.decode(value, for_view=True))

    process_seconds = checkpoint_seconds = 0.0
    clock = time.process_time
    with frozen_heap():  # the prefill's objects are the harness's, not the worker's
        for start in range(0, len(records), flush_every):
            began = clock()
            for record in records[start : start + flush_every]:
                source = (record.topic, record.partition)
                offset = offsets[source]
                offsets[source] = offset + 1
                processors[source].process(offset, record.key, record.value, (), now)
            process_seconds += clock() - began
            began = clock()
            for processor in processors.values():
                processor.tick(now)
                checkpoint = processor.take_checkpoint(now)
                if checkpoint is not None:
                    encoded.append(checkpoint.encode())
            checkpoint_seconds += clock() - began
        decode_seconds = _timed(decode_only)
        view_seconds = _timed(fold)
    per = 1e6 / len(records)
    return {
        "events": len(records),
        "checkpoints": len(encoded),
        "checkpoint_bytes_per_event": sum(map(len, encoded)) / len(records),
        "decode_us": decode_seconds * per,
        "process_us": process_seconds * per,
        "checkpoint_us": checkpoint_seconds * per,
        "view_us": view_seconds * per,
        "stage1_plus_view_us": (process_seconds + checkpoint_seconds + view_seconds) * per,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (8)")
    parser.add_argument("--flush-every", type=int, default=20_000, help="events per flush")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    args = parser.parse_args(argv)
    gc_policy.install()  # the worker's collector settings: with CPython's defaults, collections
    # re-scanning the growing state were ~19 % of `process` (sampled at dataclass allocations)
    options = {"partitions": args.partitions, "flush_every": args.flush_every, "seed": args.seed}
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(measure, args.events, **options)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return 0
    for name, value in measure(args.events, **options).items():
        print(f"{name:28} {value:12,.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
