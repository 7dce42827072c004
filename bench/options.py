"""The benchmark's command line: every option, its default, the ``--short`` sizes, the checks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.collector import BATCH_SIZES
from pipeline.settings import parse_duration

__all__ = ["RESULTS_DIR", "TANSU_RECORD_BUDGET", "broker_records", "parse_args"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TANSU_RECORD_BUDGET = 3_500_000
"""Tansu keeps every record in memory (~1.8 GB after 4M small ones): stay below this (a 3M
``--cost-point`` with its latency stage holds ~3.3M)."""
LATENCY_RATE_GUESS = 50_000
"""events/s the budget assumes for the latency stage's load (the pipeline stays below the
raw ceiling, ~50k/s)."""

SHORT = {
    "events": 5_000,
    "naive_events": 2_000,
    "latency_seconds": 3.0,
    "latency_rate": 1_000.0,
    "history": "2h",
    "placement_events": 0,
    "intake_events": 0,
}
"""``--short`` sizes; placement and intake are left out (each starts a broker and more workers
or servers of its own: ~30 s more than CI's minute); ``--short --placement-events 2000`` etc.
smoke-tests them."""


NUMBERS: tuple[tuple[str, type, float | int | None, str], ...] = (
    ("--events", int, 1_000_000, "prefilled events"),
    ("--naive-events", int, 30_000, "events the Faust baseline is timed on (it runs at a few k/s)"),
    ("--quix-events", int, 2_000, "survey events Quix Streams is timed on (sliding windows: slow)"),
    ("--latency-seconds", float, 20.0, "paced-producer duration"),
    ("--latency-load", float, 0.5, "latency-stage rate as a fraction of the pipeline's maximum"),
    ("--latency-rate", float, None, "latency-stage events/s (default: from --latency-load)"),
    ("--latency-poll", float, 0.1, "latency-stage /metrics poll interval (a scrape costs CPU)"),
    ("--partitions", int, 8, "partitions per topic"),
    ("--scale-workers", int, 2, "workers of the scale-out stage, one consumer group"),
    ("--garbage-share", float, 0.1, "share of hostile records in the hostile stage's mix"),
    ("--hostile-events", int, None, "valid events of the hostile stage (default: all)"),
    (
        "--placement-events",
        int,
        100_000,
        "events of the placement stage: murmur2 vs round-robin input (bench/placement.py), on "
        "a broker of its own; 0 skips it",
    ),
    (
        "--intake-events",
        int,
        30_000,
        "events of the intake stage: the collector vs direct produce (bench/collector.py), on a "
        "broker of its own; 0 skips it",
    ),
    ("--seed", int, 1, "simulator seed"),
    ("--flush-interval", float, None, "the workers' CX_FLUSH_INTERVAL (default: the pipeline's)"),
    (
        "--pin-cpu",
        int,
        None,
        "CPU the pinned worker and the tuned baselines run on (default: the last)",
    ),
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
    parser.add_argument(
        "--cost-point",
        action="store_true",
        help="only the prefill and the one-worker stages (drain, scrape cost, latency, memory): "
        "a point of the cost curve (CPU µs/event and RSS against --events) at sizes the whole "
        "run would not fit in the embedded broker, e.g. --events 3000000",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep broker/worker/Faust logs")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the tuned Faust agents and Quix Streams (the untuned Faust agent still runs)",
    )
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
    if 0 < args.intake_events < max(BATCH_SIZES):
        parser.error(f"--intake-events must be 0 or at least {max(BATCH_SIZES)} (one batch)")
    if args.scale_workers < 2:
        parser.error("--scale-workers must be at least 2")
    if not 0 < args.garbage_share <= 0.5:
        parser.error("--garbage-share must be in (0, 0.5]")
    args.hostile_events = min(args.hostile_events or args.events, args.events)
    cpus = os.cpu_count() or 1
    if args.pin_cpu is None:
        args.pin_cpu = cpus - 1
    if not 0 <= args.pin_cpu < cpus:
        parser.error(f"--pin-cpu must be a CPU of this machine (0..{cpus - 1})")
    return args


def broker_records(args: argparse.Namespace) -> float:
    """Records the main run's embedded broker will hold: prefill, latency stage and its broker
    hop, hostile mix and its dead letters (checkpoints and links are a few per partition and
    flush). Placement and intake run on brokers of their own."""
    latency = args.latency_rate or args.latency_load * LATENCY_RATE_GUESS
    prefill_and_latency = args.events + 2 * latency * args.latency_seconds
    if args.cost_point:
        return prefill_and_latency
    hostile = args.hostile_events / (1 - args.garbage_share)
    return prefill_and_latency + hostile + hostile * args.garbage_share
