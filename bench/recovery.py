"""Recovery time against state size: how long a restarted worker takes to be whole again.

For each size, one real worker (in this process, on the embedded broker) drains that many
realistic events, stops, and a fresh worker starts on the same topics. Measured: the seconds
until its whole-shop view has caught up, the seconds its partitions' state recovery took (from
its own log line), and how many checkpoint records each had to read, once with snapshots every
few seconds and once with none in the run (every start folds the whole log, as before
snapshots). Run: ``python -m bench.recovery [--sizes 25000,100000,250000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.data import create_source_topics, encode_events, produce_records, realistic_events
from bench.report import machine_info
from bench.soak import structure_sizes, until
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.settings import Settings
from pipeline.worker.service import Worker

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PARTITIONS = 8
MODES = {"snapshots": 2.0, "no snapshots": 1e7}
"""Snapshot interval (s) per mode: every 2 s, or never within the run."""


class _LogTap(logging.Handler):
    """Collects the worker's own recovery figures from its log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def numbers(self, pattern: str) -> list[float]:
        return [float(m.group(1)) for line in self.lines if (m := re.search(pattern, line))]


async def _seconds_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` holds (polled every 10 ms); fails after ``timeout``."""
    print(f"  waiting for {what}", file=sys.stderr, flush=True)
    began = time.perf_counter()
    await until(predicate, timeout, what, interval=0.01)
    return time.perf_counter() - began


def _counted(worker: Worker) -> int:
    kinds = ("events", "duplicate", "late", "rejected")
    return int(sum(v for (name, _), v in worker.view.totals.items() if name in kinds))


def _state_size(worker: Worker) -> dict[str, int]:
    sizes = structure_sizes(worker)
    return {
        "event_ids": sizes["dedupe_ids"],
        "entities": sizes["carts"] + sizes["orders"] + sizes["tickets"],
        "checkpoints": worker.view.applied,
    }


async def _run_worker(settings: Settings, body: Callable[[Worker], Any]) -> Any:
    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    try:
        return await body(worker)
    finally:
        worker.stop()
        done, _ = await asyncio.wait([task], timeout=60)
        if not done:
            for pending in asyncio.all_tasks():
                pending.print_stack(limit=4, file=sys.stderr)
            raise TimeoutError("the worker did not stop within 60 s of stop()")
        task.result()


async def measure(bootstrap: str, events: int, mode: str, tap: _LogTap) -> dict[str, Any]:
    name = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"r{name}.",
        app_id=f"recovery-{name}",
        source_partitions=PARTITIONS,
        session_timeout=1.0,
        snapshot_interval=MODES[mode],
        checkpoint_retention=MODES[mode] * 3 + 3 * 86_400,
        metrics_port=0,
        log_level="WARNING",
    )
    await create_source_topics(bootstrap, settings.topic_prefix, PARTITIONS)
    data = realistic_events(events, seed=11, history=7200.0, now=time.time())
    await produce_records(bootstrap, settings.topic_prefix, encode_events(data, PARTITIONS))

    async def first(worker: Worker) -> dict[str, int]:
        await _seconds_until(lambda: _counted(worker) >= events, 600, "the first worker to drain")
        snapshots = tap.count("view snapshot written")
        if mode == "snapshots":
            await _seconds_until(
                lambda: tap.count("view snapshot written") > snapshots, 30, "a view snapshot"
            )
        return _state_size(worker)

    size = await _run_worker(settings, first)
    tap.lines.clear()

    async def second(worker: Worker) -> dict[str, float]:
        view = await _seconds_until(lambda: worker.view_ready, 600, "the view to catch up")
        assigned = await _seconds_until(
            lambda: len(worker.processors) == 4 * PARTITIONS, 600, "every partition recovered"
        )
        assert _counted(worker) >= events, "a restarted view lost events"
        return {"view_ready_s": view, "all_partitions_ready_s": view + assigned}

    timings = await _run_worker(settings, second)
    return {
        "events": events,
        "mode": mode,
        **size,
        **timings,
        "state_recovery_s": sum(tap.numbers(r"state recovered in ([0-9.]+) s")),
        "recovery_records_read": sum(tap.numbers(r"recovery read (\d+) checkpoint records")),
        "view_from_snapshot": tap.count("view restored from a snapshot") > 0,
    }


async def run(sizes: list[int]) -> list[dict[str, Any]]:
    tap = _LogTap()
    logger = logging.getLogger("pipeline.worker.service")
    logger.addHandler(tap)
    logger.setLevel(logging.INFO)
    rows = []
    try:
        async with EmbeddedBroker() as broker:
            for events in sizes:
                for mode in MODES:
                    rows.append(await measure(broker.bootstrap, events, mode, tap))
                    print(_row(rows[-1]), flush=True)
    finally:
        logger.removeHandler(tap)
    return rows


def _row(row: dict[str, Any]) -> str:
    return (
        f"| {row['events']:,} | {row['mode']} | {row['checkpoints']:,} | {row['event_ids']:,} | "
        f"{row['entities']:,} | {row['recovery_records_read']:,.0f} | "
        f"{row['state_recovery_s']:.2f} | {row['view_ready_s']:.2f} | "
        f"{row['all_partitions_ready_s']:.2f} |"
    )


HEADER = (
    "| events | mode | checkpoints in log | event ids | entities | checkpoint records read "
    "by recovery | state recovery s | view ready s | all partitions ready s |\n"
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--sizes", default="25000,100000,250000", help="events per run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",")]
    print(HEADER, flush=True)
    rows = asyncio.run(run(sizes))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"recovery-{stamp}.json"
    results = {"machine": machine_info(), "recovery": rows}
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
