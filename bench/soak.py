"""Soak run: does a worker's memory stay flat once its windows are full? (issue #5)

A day of traffic must not cost a day of real time, so time is compressed: one
:class:`AcceleratedClock` (simulated epoch seconds running ``--speed`` times faster than real
time) drives both the shop simulator feeding the broker and a real worker in a child process
(``bench/soak_worker.py``). Every time-based rule of the pipeline (windows, late checks, dedupe
expiry, cart timers, entity retention, full checkpoints) reads that clock; only asyncio waits
and Kafka timeouts stay in real time. The simulator is warmed up (``--warm-up``, unproduced) so
the traffic mix is stationary from the first hour; ``--retention`` shortens how long orders and
tickets are kept (30 days in the pipeline) to see memory once they level off too.

The parent samples, once per ``--sample-every`` real seconds: the worker's RSS (psutil), its
/metrics (``cx_pipeline_*``, ``python_gc_*``, the number of exposed samples) and the sizes the
child reports of its own structures (view buckets, dedupe ids, carts, orders, tickets, timers;
:func:`structure_sizes`). Results: ``bench/results/soak-<stamp>.json``, ``soak-<stamp>.png``, a
table per simulated hour on stdout, and the verdict: RSS growth from simulated hour
``--steady-from`` (25: the 24 h window plus lateness is full) to the end.

Run: ``python -m bench.soak`` or ``cxpipe soak`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import orjson
import psutil

from bench.worker import WorkerProcess, worker_env
from pipeline.tools.simulate import ShopSimulator, produce

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from pipeline.worker import Worker

__all__ = [
    "AcceleratedClock",
    "feed",
    "main",
    "midnight_before",
    "structure_sizes",
    "until",
    "warmed_up",
]

HOUR = 3600.0
DAY = 86_400.0
MB = 1024 * 1024
RESULTS_DIR = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


# --- shared with tests/integration/test_soak.py ------------------------------------------------
@dataclass(frozen=True, slots=True)
class AcceleratedClock:
    """Simulated epoch seconds: ``start`` at real time ``origin``, then ``speed`` x real time.

    Plain data, so a child process given the same three numbers reads the same time.
    """

    start: float
    speed: float
    origin: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.start + (time.time() - self.origin) * self.speed

    def argv(self) -> list[str]:
        """The options :mod:`bench.soak_worker` rebuilds this clock from."""
        return [
            *("--clock-start", repr(self.start)),
            *("--clock-origin", repr(self.origin)),
            *("--speed", repr(self.speed)),
        ]


def midnight_before(t: float, days: int) -> float:
    """UTC midnight ``days`` days before ``t``'s day: simulated hour n is then hour n of a day."""
    return (t // DAY - days) * DAY


async def until(
    predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``predicate`` (sync or async) until truthy; AssertionError after ``timeout`` s.

    The asyncio twin of ``tests.integration.harness.wait_for``: the worker under test may run
    in the same event loop, so the wait must not block it.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def feed(
    simulator: ShopSimulator,
    producer: AIOKafkaProducer,
    prefix: str,
    clock: Callable[[], float],
    end: float,
    *,
    tick: float = 0.1,
) -> int:
    """Produce the simulator's events as ``clock`` reaches them, up to ``end``; returns the count.

    ``pipeline.simulate.run_live`` paces its ticks with ``clock`` too, which under an
    accelerated clock turns its sleep into a busy loop; here ``tick`` is real seconds.
    """
    sent = 0
    while True:
        now = min(clock(), end)
        batch = simulator.events_until(now)
        if batch:
            sent += await produce(batch, producer, prefix)
        if now >= end:
            return sent
        await asyncio.sleep(tick)


def warmed_up(*, rate: float, seed: int, start: float, warm_up: float) -> ShopSimulator:
    """A simulator that has run ``warm_up`` seconds up to ``start``, its events thrown away.

    A cold simulator's traffic is not stationary for days (orders ship and deliver 1-4 days
    after they are placed, returns and reopens come later still), so the worker's state would
    grow with the traffic itself; a warm one feeds, from ``start`` on, a shop that has been
    running for a while.
    """
    simulator = ShopSimulator(rate=rate, seed=seed, start=start - warm_up)
    simulator.events_until(start)
    return simulator


def structure_sizes(worker: Worker) -> dict[str, int]:
    """Lengths of everything in a worker that could grow with traffic (a few ms at most).

    A diagnostic, so it reads some private attributes (timer heaps, the outbox).
    """
    processors = list(worker.processors.values())
    view = worker.view
    outbox = worker._outbox

    def total(attribute: str) -> int:
        return sum(len(getattr(p.handler, attribute, ())) for p in processors)

    return {
        "view_buckets": view.store.bucket_count(),
        "view_series": sum(1 for _ in view.store.series()),
        "view_totals": len(view.totals),
        "view_index_minutes": sum(len(entry.minutes) for entry in view.index.values()),
        "view_ledger": len(view.ledger.applied),
        "dedupe_ids": sum(len(p.ids) for p in processors),
        "pending_observations": sum(len(p.out.pending) for p in processors),
        "carts": total("carts"),
        "orders": total("orders"),
        "tickets": total("tickets"),
        "timers": total("_due"),
        "outbox": len(outbox.before) + len(outbox.checkpoints),
        "partitions": len(processors),
        "allocated_blocks": sys.getallocatedblocks(),
    }


# --- the soak run ------------------------------------------------------------------------------
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


def _say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


def _by_hour(samples: list[dict[str, Any]], hours: float) -> list[dict[str, Any]]:
    """One row per simulated hour: median/max RSS of its samples, sizes at its last sample."""
    rows = []
    for hour in range(int(hours) + 1):
        inside = [s for s in samples if hour <= s["sim_hours"] < hour + 1]
        if not inside:
            continue
        last = inside[-1]
        rows.append(
            {
                "hour": hour,
                "samples": len(inside),
                "rss_mb": round(statistics.median(s["rss_mb"] for s in inside), 1),
                "rss_max_mb": max(s["rss_mb"] for s in inside),
                "broker_rss_mb": last["broker_rss_mb"],
                "events": last.get("events", 0),
                "exposed_samples": last.get("samples", 0),
                "sizes": {k: v for k, v in last["sizes"].items() if isinstance(v, int)},
            }
        )
    return rows


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 with fewer than two)."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def _days(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Hour rows by simulated day, whole days only (20+ hours: a row may lack samples)."""
    days: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        days.setdefault(row["hour"] // 24, []).append(row)
    return {day: hours for day, hours in days.items() if len(hours) >= 20}


def verdict(rows: list[dict[str, Any]], steady_from: float) -> dict[str, Any]:
    """RSS growth from the first steady hour to the last: absolute, relative, per hour.

    Also the peak RSS of each simulated day: the allocator keeps what a transient peak took
    (a full checkpoint, a busy batch), so RSS steps up until the busiest hour of a day with
    full windows has passed; equal peaks on later days are what "flat" means then.
    """
    steady = [row for row in rows if row["hour"] >= steady_from]
    first, last = steady[0], steady[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    structures = {
        name: {
            "from": first["sizes"].get(name),
            "to": last["sizes"].get(name),
            "per_hour": round(_slope([(r["hour"], r["sizes"].get(name, 0)) for r in steady]), 1),
        }
        for name in last["sizes"]
    }
    return {
        "from_hour": first["hour"],
        "to_hour": last["hour"],
        "rss_from_mb": first["rss_mb"],
        "rss_to_mb": last["rss_mb"],
        "rss_growth_mb": round(growth, 1),
        "rss_growth_pct": round(100 * growth / first["rss_mb"], 1),
        "rss_slope_mb_per_hour": round(_slope([(r["hour"], r["rss_mb"]) for r in steady]), 2),
        "rss_peak_by_day_mb": {
            f"{day * 24}-{day * 24 + 24}h": max(r["rss_max_mb"] for r in hours)
            for day, hours in _days(rows).items()
        },
        "structures": structures,
    }


TABLE_SIZES = ("dedupe_ids", "view_buckets", "carts", "orders", "tickets", "timers")


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per simulated hour, RSS, events counted, the sizes that matter."""
    head = ["sim h", "RSS MB", "max MB", "broker MB", "events", *TABLE_SIZES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in rows:
        broker = "–" if row["broker_rss_mb"] is None else f"{row['broker_rss_mb']:.0f}"
        cells = [
            str(row["hour"]),
            f"{row['rss_mb']:.1f}",
            f"{row['rss_max_mb']:.1f}",
            broker,
            f"{row['events']:,.0f}",
            *(f"{row['sizes'].get(name, 0):,}" for name in TABLE_SIZES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_chart(results: dict[str, Any], path: Path) -> None:
    """Worker RSS over simulated hours (left) and the structure sizes behind it (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, judged = results["samples"], results["verdict"]
    steady_from = results["parameters"]["steady_from"]
    fig, (memory, sizes) = plt.subplots(1, 2, figsize=(11, 4.2))
    memory.plot([s["sim_hours"] for s in samples], [s["rss_mb"] for s in samples], lw=1)
    memory.axvspan(0, steady_from, color="#eeeeee", label="windows filling")
    memory.set_xlabel("simulated hours")
    memory.set_ylabel("worker RSS (MB)")
    memory.set_ylim(bottom=0)
    memory.legend(loc="lower right", fontsize=8)
    memory.set_title(
        f"RSS h{judged['from_hour']}→h{judged['to_hour']}: {judged['rss_growth_mb']:+.1f} MB "
        f"({judged['rss_growth_pct']:+.1f} %)",
        fontsize=10,
    )
    sized = [s for s in samples if s["sizes"]]
    base = next(s["sizes"] for s in sized if s["sim_hours"] >= steady_from)
    for name in TABLE_SIZES:
        if base.get(name):
            sizes.plot(
                [s["sim_hours"] for s in sized],
                [s["sizes"].get(name, 0) / base[name] for s in sized],
                label=f"{name} ({base[name]:,})",
                lw=1,
            )
    sizes.axhline(1.0, color="#999999", lw=0.5)
    sizes.axvspan(0, steady_from, color="#eeeeee")
    sizes.legend(fontsize=7, ncol=2, loc="lower right")
    sizes.set_ylim(bottom=0)
    sizes.set_xlabel("simulated hours")
    sizes.set_title(f"Entries held by the worker, relative to hour {steady_from:g}", fontsize=10)
    from bench.report import save_figure

    p = results["parameters"]
    save_figure(
        fig,
        f"cx-pipeline soak: {p['hours']:g} simulated h at {p['rate']:g} events/s, "
        f"{p['speed']:g}× real time, {results['wall_seconds']:.0f} s wall",
        path,
    )


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """The whole soak; returns the results document (without writing it)."""
    from bench.report import machine_info
    from bench.run import _broker  # the benchmark's: embedded Tansu unless --bootstrap

    results: dict[str, Any] = {"machine": machine_info()}
    began = time.monotonic()
    with _broker(args.bootstrap, log_dir) as (bootstrap, broker_pid):
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
    rows = _by_hour(soak.samples, args.hours)
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


if __name__ == "__main__":
    raise SystemExit(main())
