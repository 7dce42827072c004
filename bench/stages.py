"""The measured stages: raw ceiling, pipeline drain (one worker or a group), view fold cost,
end-to-end latency.

Each returns a plain dict of figures (seconds, events/s, ...) for the report. Time is measured
with ``time.perf_counter`` inside a process and ``time.time`` across processes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import math
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.data import BenchRecord, make_producer, partition_of, send_records
from bench.profile import Profiler
from bench.worker import MetricsSnapshot, WorkerProcess, parse_metrics
from pipeline.checkpoint import Checkpoint
from pipeline.settings import Settings
from pipeline.tools.simulate import SimEvent
from pipeline.topics import SOURCE_TOPICS
from pipeline.view import View
from pipeline.windows import window_specs
from schemas import EventRejected, decode_record

__all__ = [
    "DrainSample",
    "Progress",
    "counted_events",
    "counted_records",
    "drain_pipeline",
    "measure_latency",
    "raw_ceiling",
    "read_log",
    "rss_by_progress",
    "scale_model",
    "scrape_cost",
    "view_fold_cost",
]

MB = 1024 * 1024


# --- raw ceiling -------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _reader(
    bootstrap: str, topics: Iterable[str], partition_fetch_bytes: int = 4 * MB
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A bare consumer (no group, manual assignment) on every partition of ``topics``, at the
    beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=64 * MB,
        max_partition_fetch_bytes=partition_fetch_bytes,
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def raw_ceiling(
    bootstrap: str, prefix: str, expected: int, *, validate: bool, timeout: float
) -> dict[str, float]:
    """Read all ``expected`` records of the four topics from the start with a bare consumer.

    No group (manual assignment), ``getmany`` in batches of 10 000; with ``validate`` every record
    goes through ``decode_record`` (``orjson.loads`` + the contract) with ``now=time.time()``.
    """
    short = {prefix + name: name for name in SOURCE_TOPICS}
    async with _reader(bootstrap, short) as (consumer, _):
        count = rejected = 0
        began = time.perf_counter()
        deadline = began + timeout
        while count < expected:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"raw consumer read {count} of {expected} records")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                if validate:
                    topic = short[tp.topic]
                    for record in records:
                        try:
                            decode_record(topic, record.key, record.value, now=time.time())
                        except EventRejected:
                            rejected += 1
                count += len(records)
        seconds = time.perf_counter() - began
    return {
        "events": count,
        "seconds": seconds,
        "events_per_s": count / seconds,
        "rejected": rejected,
    }


# --- the replicated view -----------------------------------------------------------------------
async def read_log(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of ``topic``, up to the end offsets AND an empty fetch (Tansu reports a
    multi-record batch's base offset + 1 as the end, so the offset alone stops short)."""
    async with _reader(bootstrap, [topic], partition_fetch_bytes=64 * MB) as (consumer, tps):
        end = await consumer.end_offsets(tps)
        values: list[bytes] = []
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                values.extend(record.value for record in records if record.value is not None)
            if not batch and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                return values


def view_fold_cost(checkpoints: Sequence[bytes], events: float) -> dict[str, float]:
    """CPU to fold a drain's checkpoint log into a fresh whole-shop view, as a worker's view does.

    Every worker tails the WHOLE log (replicated stage 2: any worker exports complete numbers),
    so this cost is paid once per worker for every event of the shop: the part of the work that
    adding workers does not divide. Decoded ``for_view`` and applied as the worker's view loop
    does (without its expiry and recovery index). The harness's own heap is frozen out of the
    GC first so that its millions of prefill objects do not bill the fold.
    """
    view = View(window_specs(Settings().window_seconds))
    gc.collect()
    gc.freeze()
    try:
        began = time.process_time()
        for value in checkpoints:
            view.apply(Checkpoint.decode(value, for_view=True))
        seconds = time.process_time() - began
    finally:
        gc.unfreeze()
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


# --- pipeline drain ----------------------------------------------------------------------------
Progress = Callable[[MetricsSnapshot], float]
"""What a drain counts on /metrics: valid events, or every record (events + rejected)."""


def counted_events(snapshot: MetricsSnapshot) -> float:
    return snapshot.events


def counted_records(snapshot: MetricsSnapshot) -> float:
    """Valid events and dead-lettered records: everything a worker has consumed."""
    return snapshot.events + snapshot.rejected


@dataclass(frozen=True, slots=True)
class DrainSample:
    seconds: float
    """Since the workers were started."""
    events: float
    rss: int
    """Sum over the workers."""
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class _GroupPoll:
    """One scrape of every worker: the slowest view decides how far the group has got."""

    progress: float
    slowest: MetricsSnapshot
    assigned: tuple[float, ...]

    def balanced(self, partitions: int) -> bool:
        """Every worker owns partitions and together they own all of them."""
        return all(self.assigned) and sum(self.assigned) >= partitions


def _poll_group(workers: Sequence[WorkerProcess], progress: Progress) -> _GroupPoll | None:
    snapshots = [worker.snapshot() for worker in workers]
    if any(snapshot is None for snapshot in snapshots):
        return None
    answered = [snapshot for snapshot in snapshots if snapshot is not None]
    slowest = min(answered, key=progress)
    return _GroupPoll(progress(slowest), slowest, tuple(s.assigned_partitions for s in answered))


@dataclass(frozen=True, slots=True)
class _Mark:
    at: float
    """``time.perf_counter()`` of the poll."""
    progress: float
    cpu: float
    """CPU seconds of all workers so far."""


class _Drain:
    """The marks of one drain, filled poll by poll (see :func:`drain_pipeline`)."""

    def __init__(self, workers: Sequence[WorkerProcess], expected: int, partitions: int) -> None:
        self.workers, self.expected, self.partitions = workers, expected, partitions
        self.spawn = time.perf_counter()
        self.samples: list[DrainSample] = []
        self.scrape_seconds: list[float] = []
        self.assigned: _Mark | None = None
        self.first: _Mark | None = None
        self.start: _Mark | None = None
        self.done: _Mark | None = None
        self.assignments: list[tuple[float, ...]] = []
        self.last: _GroupPoll | None = None

    def cpu(self) -> float:
        return sum(worker.cpu_seconds() for worker in self.workers)

    def record(self, state: _GroupPoll, now: float) -> _Mark:
        self.last = state
        mark = _Mark(now, state.progress, self.cpu())
        rss = sum(worker.rss() for worker in self.workers)
        self.samples.append(DrainSample(now - self.spawn, state.progress, rss, mark.cpu))
        balanced = state.balanced(self.partitions)
        if self.assigned is None and balanced:
            self.assigned = mark
        if self.first is None and state.progress > 0:
            self.first = mark
        if self.start is None and balanced and state.progress > 0:
            self.start = mark
        if self.start is not None and state.assigned not in self.assignments[-1:]:
            self.assignments.append(state.assigned)
        if state.progress >= self.expected:
            self.done = mark
        return mark

    def timeout_error(self, timeout: float) -> TimeoutError:
        counted = self.last.progress if self.last else 0
        tails = "\n".join(worker.log_tail() for worker in self.workers)
        return TimeoutError(
            f"pipeline counted {counted:.0f} of {self.expected} in {timeout:.0f} s\n{tails}"
        )


def drain_pipeline(
    workers: Sequence[WorkerProcess],
    expected: int,
    *,
    partitions: int,
    progress: Progress = counted_events,
    poll: float = 0.2,
    timeout: float = 300.0,
    profiler: Profiler | None = None,
    broker_pid: int | None = None,
) -> tuple[dict[str, Any], list[DrainSample]]:
    """Start ``workers`` (one consumer group) on prefilled topics; poll until ``expected`` counted.

    Every worker's view holds the whole shop, so the group has got as far as its slowest view.
    Marks: *assigned* = the workers together report all ``partitions`` source partitions
    assigned, each some (group join and state recovery done); *first* = the first poll with
    ``progress > 0``; *start* = the first poll that is both; *done* = the first poll with
    ``progress >= expected``. The headline rate is (expected - progress at *start*) /
    (done - start): startup, group join, a rebalance as later workers join and the first
    checkpoint interval are excluded. Rates from process start and from *assigned* are reported
    too, and how busy the machine's CPUs were (workers, broker, everything else) in the measured
    interval: on a shared machine, other load shows there.
    """
    machine = _CpuMeter(broker_pid)
    drain = _Drain(workers, expected, partitions)
    for worker in workers:
        worker.start(ready_timeout=None)
    next_poll = drain.spawn
    try:
        while drain.done is None:
            next_poll += poll
            asked = time.perf_counter()
            state = _poll_group(workers, progress)
            now = time.perf_counter()
            if now - drain.spawn > timeout:
                raise drain.timeout_error(timeout)
            if state is not None:
                drain.scrape_seconds.append(now - asked)
                mark = drain.record(state, now)
                if profiler is not None and mark is drain.assigned:
                    profiler.start(workers[0].pid)
                if mark is drain.start:
                    machine.start()
                if mark is drain.done and drain.start is not None:
                    machine.stop(mark.cpu - drain.start.cpu)
            time.sleep(max(0.0, next_poll - time.perf_counter()))
    finally:
        if profiler is not None:
            profiler.stop()
    return _drain_figures(drain, poll) | machine.figures, drain.samples


def _drain_figures(drain: _Drain, poll: float) -> dict[str, Any]:
    """Rates and CPU of a finished drain (see :func:`drain_pipeline` for the marks)."""
    done, last = drain.done, drain.last
    assert done is not None and drain.first is not None and last is not None
    start = drain.start or drain.first  # a group that never balanced: from the first count
    assigned = drain.assigned or drain.first  # the gauge was missed between two polls
    # at least one poll: a tiny run can be counted in the very poll it was assigned in
    from_assigned = max(done.at - assigned.at, poll)
    expected = drain.expected
    steady_events = expected - start.progress
    steady_seconds = done.at - start.at
    steady_measured = steady_events >= 0.25 * expected and steady_seconds > 0
    if steady_measured:
        headline = steady_events / steady_seconds
        cpu_from, cpu_events, cpu_wall = start, steady_events, steady_seconds
    else:  # everything arrived in the first checkpoints (tiny runs): from assignment instead
        headline = expected / from_assigned
        cpu_from, cpu_events, cpu_wall = assigned, expected, from_assigned
    cpu_seconds = done.cpu - cpu_from.cpu
    return {
        "workers": len(drain.workers),
        "events": expected,
        "events_counted": last.slowest.events,
        "rejected": last.slowest.rejected,
        "duplicates": last.slowest.duplicates,
        "events_per_s": headline,
        "steady_measured": steady_measured,
        "seconds_steady": steady_seconds,
        "events_at_first_count": start.progress,
        "events_per_s_from_assigned": expected / from_assigned,
        "events_per_s_from_start": expected / (done.at - drain.spawn),
        "seconds_from_start": done.at - drain.spawn,
        "startup_seconds": assigned.at - drain.spawn,
        "first_count_seconds": drain.first.at - drain.spawn,
        "assigned_partitions": list(last.assigned),
        "assignment_changes": max(0, len(drain.assignments) - 1),
        "worker_cpu_seconds": cpu_seconds,
        "worker_cpu_us_per_event": cpu_seconds / cpu_events * 1e6,
        "worker_cpu_utilisation": cpu_seconds / cpu_wall if cpu_wall > 0 else 0.0,
        "poll_seconds": poll,
        "scrape_ms_median": statistics.median(drain.scrape_seconds) * 1000,
    }


class _CpuMeter:
    """Busy CPUs of the machine, the broker and this process between start() and stop()."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker = psutil.Process(broker_pid) if broker_pid else None
        self.me = psutil.Process()
        self.figures: dict[str, float] = {}

    def _read(self) -> tuple[float, float, float, float, float]:
        total = psutil.cpu_times()
        steal = getattr(total, "steal", 0.0)
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0) - steal
        broker = sum(self.broker.cpu_times()[:2]) if self.broker else 0.0
        return time.perf_counter(), busy, broker, sum(self.me.cpu_times()[:2]), steal

    def start(self) -> None:
        self.began = self._read()

    def stop(self, worker_cpu: float) -> None:
        end = self._read()
        wall, busy, broker, me, steal = (b - a for a, b in zip(self.began, end, strict=True))
        if wall <= 0:
            return
        self.figures = {
            "machine_busy_cores": busy / wall,
            "broker_busy_cores": broker / wall,
            "harness_busy_cores": me / wall,
            "other_busy_cores": max(0.0, busy - broker - me - worker_cpu) / wall,
            "steal_cores": steal / wall,  # CPU the hypervisor gave to other guests
        }


def scrape_cost(worker: WorkerProcess, scrapes: int = 20, settle: float = 15.0) -> dict[str, float]:
    """Worker CPU and wall time per /metrics scrape, measured back to back on the idle worker.

    The latency stage polls every 100 ms; this says how much of the worker that costs. First
    waits (up to ``settle`` s) for the worker to go idle: a few seconds after the last event it
    decides the abandoned carts of the history (quiet period), a burst of CPU.
    """
    began = time.perf_counter()
    while True:
        idle_began, idle_cpu = time.perf_counter(), worker.cpu_seconds()
        time.sleep(0.5)
        idle_per_second = (worker.cpu_seconds() - idle_cpu) / (time.perf_counter() - idle_began)
        if idle_per_second < 0.1 or time.perf_counter() - began > settle:
            break
    settled = time.perf_counter() - began
    began, cpu = time.perf_counter(), worker.cpu_seconds()
    for _ in range(scrapes):
        size = len(worker.metrics_text())
    wall = time.perf_counter() - began
    busy = worker.cpu_seconds() - cpu - idle_per_second * wall
    return {
        "scrape_wall_ms": wall / scrapes * 1000,
        "scrape_cpu_ms": max(0.0, busy) / scrapes * 1000,
        "scrape_bytes": size,
        "idle_cpu_utilisation": idle_per_second,
        "settle_seconds": settled,
    }


def rss_by_progress(
    samples: Sequence[DrainSample], expected: int, fractions: Sequence[float] = (0.25, 0.5, 0.75, 1)
) -> list[dict[str, float]]:
    """RSS at the first sample that had counted each fraction of ``expected`` events."""
    points = []
    for fraction in fractions:
        target = fraction * expected
        sample = next((s for s in samples if s.events >= target), samples[-1])
        points.append(
            {"fraction": fraction, "events": sample.events, "rss_mb": round(sample.rss / MB, 1)}
        )
    return points


# --- end-to-end latency ------------------------------------------------------------------------
def _iso(epoch: float) -> str:
    seconds = math.floor(epoch)
    millis = min(999, int((epoch - seconds) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _weighted_percentile(pairs: Sequence[tuple[float, int]], q: float) -> float:
    """The ``q``-quantile of values given as (value, weight), nearest rank."""
    ordered = sorted(pairs)
    total = sum(weight for _, weight in ordered)
    rank = q * total
    running = 0
    for value, weight in ordered:
        running += weight
        if running >= rank:
            return value
    return ordered[-1][0]


async def measure_latency(
    worker: WorkerProcess,
    *,
    bootstrap: str,
    prefix: str,
    events: Sequence[SimEvent],
    rate: float,
    seconds: float,
    partitions: int,
    poll: float = 0.1,
    tick: float = 0.02,
    broker_pid: int | None = None,
    settle_timeout: float = 30.0,
) -> dict[str, float]:
    """Produce ``events`` paced at ``rate``/s for ``seconds`` with ``occurred_at`` = send time.

    Every ``tick`` the events due are stamped with the current wall time and sent as batches;
    /metrics is polled every ``poll`` s. An event's latency is the time from its send to the
    first poll whose ``cx_events_total`` reached the cumulative count including it (the
    pipeline counts whole checkpoints, so "counted" means its checkpoint reached the view).
    Percentiles are over events; poll granularity adds up to ``poll`` + one scrape.
    """

    total = min(len(events), max(1, int(rate * seconds)))
    text_before = await asyncio.to_thread(worker.metrics_text)
    base = parse_metrics(text_before).events
    sends: list[tuple[float, int]] = []  # (wall time of the send, cumulative events sent)
    polls: list[tuple[float, float]] = []  # (wall time of the answer, cx_events_total)
    full_gcs: list[tuple[float, float]] = []  # (wall time of the answer, full GCs so far)
    scrape_seconds: list[float] = []
    stop_polling = asyncio.Event()

    async def poller(session: aiohttp.ClientSession) -> None:
        while True:
            asked = time.time()
            async with session.get(f"{worker.url}/metrics") as response:
                text = await response.text()
            answered = time.time()
            scrape_seconds.append(answered - asked)
            snapshot = parse_metrics(text)
            polls.append((answered, snapshot.events))
            full_gcs.append((answered, snapshot.gc_full_collections))
            if stop_polling.is_set():
                return
            await asyncio.sleep(max(0.0, poll - (time.time() - asked)))

    cache: dict[bytes, int] = {}
    prepared = [  # everything but the time stamp, outside the paced loop
        (event.topic, partition_of(key, partitions, cache), key, event.value)
        for event in events[:total]
        for key in (event.key.encode(),)
    ]
    meter = _CpuMeter(broker_pid)
    producer = make_producer(bootstrap)
    await producer.start()
    dumps = orjson.dumps
    futures: list[asyncio.Future[object]] = []
    async with aiohttp.ClientSession() as session:
        polling = asyncio.create_task(poller(session))
        try:
            began, cpu_began = time.time(), worker.cpu_seconds()
            meter.start()
            sent = 0
            while sent < total:
                now = time.time()
                due = min(total, math.floor((now - began) * rate) + 1)
                if due > sent:
                    stamp = _iso(now)
                    records = [
                        BenchRecord(topic, partition, key, dumps({**value, "occurred_at": stamp}))
                        for topic, partition, key, value in prepared[sent:due]
                    ]
                    futures.extend(await send_records(producer, prefix, records))
                    sends.append((now, due))
                    sent = due
                await asyncio.sleep(max(0.0, tick - (time.time() - now)))
            produced_for = time.time() - began
            meter.stop(worker.cpu_seconds() - cpu_began)
            await asyncio.gather(*futures)
            deadline = time.time() + settle_timeout
            while not polls or polls[-1][1] < base + total:
                worker.check_alive()
                if time.time() > deadline:
                    raise TimeoutError(
                        f"latency stage: {polls[-1][1] - base if polls else 0:.0f} of {total} "
                        f"events counted {settle_timeout:.0f} s after the last send"
                    )
                await asyncio.sleep(poll)
        finally:
            stop_polling.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(polling, 5)
            polling.cancel()
            await producer.stop()
    counts = [count for _, count in polls]
    latencies: list[tuple[float, int]] = []
    previous = 0
    for sent_at, cumulative in sends:
        index = bisect.bisect_left(counts, base + cumulative)
        latencies.append((max(0.0, polls[index][0] - sent_at), cumulative - previous))
        previous = cumulative
    gc_seen = [
        t - began for (t, n), (_, before) in zip(full_gcs[1:], full_gcs, strict=False) if n > before
    ]
    timeline: dict[int, list[float]] = {}
    for (sent_at, _), (latency, _) in zip(sends, latencies, strict=True):
        timeline.setdefault(int(sent_at - began), []).append(latency)
    return {
        "target_events_per_s": rate,
        "events": total,
        "seconds": produced_for,
        "events_per_s": total / produced_for,
        "p50_ms": _weighted_percentile(latencies, 0.50) * 1000,
        "p90_ms": _weighted_percentile(latencies, 0.90) * 1000,
        "p99_ms": _weighted_percentile(latencies, 0.99) * 1000,
        "max_ms": max(value for value, _ in latencies) * 1000,
        "mean_ms": sum(v * w for v, w in latencies) / total * 1000,
        "poll_ms": poll * 1000,
        "tick_ms": tick * 1000,
        "scrape_ms_median": statistics.median(scrape_seconds) * 1000,
        "worker_cpu_utilisation": (worker.cpu_seconds() - cpu_began) / (time.time() - began),
        **meter.figures,
        "max_ms_per_second": [round(max(values) * 1000) for _, values in sorted(timeline.items())],
        "full_gc_collections": full_gcs[-1][1] - full_gcs[0][1],
        "full_gc_seen_at_seconds": [round(t, 1) for t in gc_seen],
    }
