"""The soak run: a real worker child on the accelerated clock, fed by the warmed-up simulator,
sampled every ``--sample-every`` real seconds (RSS, /metrics, its own structure sizes)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import psutil

from bench.harness import MB, broker, say
from bench.soak.clock import HOUR, AcceleratedClock, feed, midnight_before, until, warmed_up
from bench.soak.verdict import by_hour, table, verdict, write_chart
from bench.worker import WorkerProcess, worker_env
from pipeline.tools.simulate import ShopSimulator

__all__ = ["main", "parse_args", "run"]


def _say(message: str) -> None:
    say(message, "soak")


RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak: simulated hours of shop traffic through one worker on an accelerated "
        "clock; RSS per simulated hour and whether it stays flat once the windows are full.",
    )
    parser.add_argument("--hours", type=float, default=48.0, help="simulated hours (48)")
    parser.add_argument(
        "--speed", type=float, default=288.0, help="simulated seconds per real second (288)"
    )
    parser.add_argument(
        "--rate", type=float, default=2.0, help="simulated events/s, daily average (2.0)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (1)")
    parser.add_argument(
        "--warm-up",
        type=float,
        default=96.0,
        help="simulated hours the simulator runs before the feed, unproduced (96: see warmed_up)",
    )
    parser.add_argument(
        "--retention",
        type=float,
        default=None,
        help="CX_ENTITY_RETENTION for the soak: forget orders and tickets this many simulated "
        "seconds after their last event (default 30 days; e.g. 86400 to see them level off)",
    )
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (8)")
    parser.add_argument(
        "--steady-from",
        type=float,
        default=25.0,
        help="simulated hour from which memory must be flat (25: 24 h window + lateness)",
    )
    parser.add_argument(
        "--sample-every", type=float, default=1.0, help="real seconds between samples (1)"
    )
    parser.add_argument(
        "--flush-interval", type=float, default=None, help="CX_FLUSH_INTERVAL of the worker"
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=None,
        help="CX_SNAPSHOT_INTERVAL of the worker, in simulated seconds (pipeline default)",
    )
    parser.add_argument(
        "--bootstrap", help="use this Kafka/Tansu broker instead of starting an embedded one"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--keep-logs", action="store_true", help="keep broker/worker logs")
    args = parser.parse_args(argv)
    if args.hours <= args.steady_from:
        parser.error("--hours must exceed --steady-from (nothing to judge otherwise)")
    if args.speed <= 0 or args.rate <= 0 or args.sample_every <= 0 or args.warm_up < 0:
        parser.error("--speed, --rate, --sample-every and --warm-up must be positive")
    return args


class SoakWorkerProcess(WorkerProcess):
    """The child: ``bench.worker.WorkerProcess`` (env, RSS, /metrics) on another entry point."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        clock: AcceleratedClock,
        sizes_path: Path,
    ) -> None:
        super().__init__(env, log_path)
        self.sizes_path = sizes_path
        self.argv = ["-m", "bench.soak_worker", "--sizes", str(sizes_path), *clock.argv()]

    def start(self, ready_timeout: float | None = None) -> None:
        """Spawn it; readiness comes from the sizes it reports (view ready, partitions held)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.process = psutil.Process(self.proc.pid)


def _worker_process(
    args: argparse.Namespace, bootstrap: str, clock: AcceleratedClock, log_dir: Path
) -> SoakWorkerProcess:
    settings = {"source_partitions": str(args.partitions)}
    if args.retention is not None:
        settings["entity_retention"] = str(args.retention)
    if args.flush_interval is not None:
        settings["flush_interval"] = str(args.flush_interval)
    if args.snapshot_interval is not None:
        settings["snapshot_interval"] = str(args.snapshot_interval)
    tag = uuid.uuid4().hex[:8]
    env = worker_env(bootstrap=bootstrap, prefix=f"soak{tag}.", app_id=f"soak-{tag}", **settings)
    return SoakWorkerProcess(env, log_dir / "worker.log", clock, log_dir / "sizes.jsonl")


class _Sizes:
    """Follows the child's ``sizes.jsonl`` (one JSON object per line, appended every second)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.latest: dict[str, Any] = {}
        self._file: BinaryIO | None = None
        self._rest = b""

    def read(self) -> dict[str, Any]:
        if self._file is None:
            if not self.path.exists():
                return self.latest
            self._file = self.path.open("rb")
        *lines, self._rest = (self._rest + self._file.read()).split(b"\n")
        if lines:
            self.latest = orjson.loads(lines[-1])
        return self.latest

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


_SCALARS = {
    "process_resident_memory_bytes": "rss_self_reported",
    "cx_pipeline_checkpoints_total": "checkpoints",
    "cx_pipeline_assigned_partitions": "assigned",
}


def _metric_figures(text: str) -> dict[str, float]:
    """Counts from one /metrics scrape: events counted, GC, checkpoints, exposed samples."""
    figures = dict.fromkeys(
        ["events", "late", "gc_collections", "gc_collected", "lag_series", "samples"], 0.0
    )
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        figures["samples"] += 1
        name = line.split("{", 1)[0].split(" ", 1)[0]
        value = float(line.rsplit(" ", 1)[1])
        if name == "cx_events_total":
            figures["events"] += value
        elif name == "cx_events_late_total":
            figures["late"] += value
        elif name == "python_gc_collections_total":
            figures["gc_collections"] += value
        elif name == "python_gc_objects_collected_total":
            figures["gc_collected"] += value
        elif name == "cx_pipeline_consumer_lag":
            figures["lag_series"] += 1
        elif name in _SCALARS:
            figures[_SCALARS[name]] = value
    return figures


@dataclass
class _Soak:
    """One soak run's moving parts; :meth:`sample` runs in threads (a scrape blocks)."""

    args: argparse.Namespace
    clock: AcceleratedClock
    worker: SoakWorkerProcess
    broker: psutil.Process | None
    sizes: _Sizes
    began: float = field(default_factory=time.monotonic)
    feed_start: float = 0.0
    sent: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self) -> dict[str, Any]:
        with self._lock:
            return self._sample()

    def _sample(self) -> dict[str, Any]:
        self.worker.check_alive()
        rss = self.worker.rss()
        try:
            figures = _metric_figures(self.worker.metrics_text())
        except OSError:
            figures = {}
        point = {
            "real_s": round(time.monotonic() - self.began, 2),
            "sim_hours": round((self.clock() - self.feed_start) / HOUR, 4),
            "rss_mb": round(rss / MB, 2),
            "broker_rss_mb": round(self.broker.memory_info().rss / MB, 1) if self.broker else None,
            **figures,
            "sizes": self.sizes.read(),
        }
        self.samples.append(point)
        return point

    async def sample_every(self, seconds: float) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(seconds)


async def _run(soak: _Soak, simulator: ShopSimulator, bootstrap: str) -> None:
    from aiokafka import AIOKafkaProducer

    args, worker = soak.args, soak.worker

    def ready() -> bool:
        worker.check_alive()
        return soak.sizes.read().get("view_ready", False) and soak.sizes.latest["partitions"] > 0

    await until(ready, 120, f"the worker to be ready (log {worker.log_path})", interval=0.2)
    soak.feed_start = soak.clock.start  # the start-up's backlog goes out with the first batch
    end = soak.feed_start + args.hours * HOUR
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    sampler = asyncio.create_task(soak.sample_every(args.sample_every))
    try:
        _say(f"feeding {args.hours:g} simulated hours at {args.rate:g} events/s")
        hour = 0
        while soak.clock() < end:
            stop = min(end, soak.feed_start + (hour + 1) * HOUR)
            soak.sent += await feed(
                simulator, producer, worker.env["CX_TOPIC_PREFIX"], soak.clock, stop
            )
            hour += 1
            last = soak.samples[-1] if soak.samples else {}
            _say(
                f"  simulated hour {hour}: {soak.sent:,} sent, {last.get('events', 0):,.0f} "
                f"counted, worker RSS {last.get('rss_mb', 0):.0f} MB"
            )
        await until(
            lambda: soak.samples and soak.samples[-1].get("events", 0) >= soak.sent,
            120,
            "the worker to count every event",
        )
    finally:
        sampler.cancel()
        await producer.stop()
    await asyncio.to_thread(soak.sample)


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """The whole soak; returns the results document (without writing it)."""
    from bench.report import machine_info

    results: dict[str, Any] = {"machine": machine_info()}
    began = time.monotonic()
    with broker(args.bootstrap, log_dir) as (bootstrap, broker_pid):
        start = midnight_before(time.time(), int(args.hours // 24) + 2)
        _say(f"warming the simulator up: {args.warm_up:g} simulated hours, not produced")
        simulator = warmed_up(
            rate=args.rate, seed=args.seed, start=start, warm_up=args.warm_up * HOUR
        )
        clock = AcceleratedClock(start=start, speed=args.speed)
        worker = _worker_process(args, bootstrap, clock, log_dir)
        worker.start()
        soak = _Soak(
            args,
            clock,
            worker,
            psutil.Process(broker_pid) if broker_pid else None,
            _Sizes(worker.sizes_path),
        )
        try:
            asyncio.run(_run(soak, simulator, bootstrap))
        finally:
            worker.stop()
            soak.sizes.close()
    rows = by_hour(soak.samples, args.hours)
    results |= {
        "parameters": {
            "hours": args.hours,
            "speed": args.speed,
            "rate": args.rate,
            "seed": args.seed,
            "warm_up_hours": args.warm_up,
            "retention": args.retention,
            "partitions": args.partitions,
            "steady_from": args.steady_from,
            "sample_every": args.sample_every,
            "flush_interval": args.flush_interval,
            "snapshot_interval": args.snapshot_interval,
            "broker": "external" if args.bootstrap else "embedded Tansu",
        },
        "events_sent": soak.sent,
        "wall_seconds": round(time.monotonic() - began, 1),
        "verdict": verdict(rows, args.steady_from),
        "by_hour": rows,
        "samples": soak.samples,
    }
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.soak [options]``: run, write JSON + PNG, print the table and verdict."""
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    log_dir = Path(tempfile.mkdtemp(prefix="cx-soak-"))
    results: dict[str, Any] | None = None
    try:
        results = {"timestamp": stamp, **run(args, log_dir)}
    finally:
        if results is None or args.keep_logs:
            _say(f"broker and worker logs in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{stamp}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    chart = args.out / f"soak-{stamp}.png"
    write_chart(results, chart)
    _say(f"results: {path}, chart: {chart}")
    judged = results["verdict"]
    print(table(results["by_hour"]))
    print(
        f"\nRSS from simulated hour {judged['from_hour']} to {judged['to_hour']}: "
        f"{judged['rss_from_mb']:.1f} → {judged['rss_to_mb']:.1f} MB, "
        f"{judged['rss_growth_mb']:+.1f} MB ({judged['rss_growth_pct']:+.1f} %), "
        f"slope {judged['rss_slope_mb_per_hour']:+.2f} MB per simulated hour; peak RSS by "
        f"simulated day: {judged['rss_peak_by_day_mb']}"
    )
    return 0
