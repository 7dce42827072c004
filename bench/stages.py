"""The measured stages: raw ceiling, pipeline drain, end-to-end latency.

Each returns a plain dict of figures (seconds, events/s, ...) for the report. Time is measured
with ``time.perf_counter`` inside a process and ``time.time`` across processes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.data import BenchRecord, make_producer, partition_of, send_records
from bench.profile import Profiler
from bench.worker import MetricsSnapshot, WorkerProcess, parse_metrics
from pipeline.simulate import SimEvent
from pipeline.topics import SOURCE_TOPICS
from schemas import EventRejected, decode_record

__all__ = [
    "DrainSample",
    "drain_pipeline",
    "measure_latency",
    "raw_ceiling",
    "rss_by_progress",
    "scrape_cost",
]

MB = 1024 * 1024


# --- raw ceiling -------------------------------------------------------------------------------
async def raw_ceiling(
    bootstrap: str, prefix: str, expected: int, *, validate: bool, timeout: float
) -> dict[str, float]:
    """Read all ``expected`` records of the four topics from the start with a bare consumer.

    No group (manual assignment), ``getmany`` in batches of 10 000; with ``validate`` every record
    goes through ``decode_record`` (``orjson.loads`` + the contract) with ``now=time.time()``.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=64 * MB,
        max_partition_fetch_bytes=4 * MB,
    )
    await consumer.start()
    try:
        short = {prefix + name: name for name in SOURCE_TOPICS}
        await consumer.topics()  # metadata
        tps = [
            TopicPartition(topic, p)
            for topic in short
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
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
    finally:
        await consumer.stop()
    return {
        "events": count,
        "seconds": seconds,
        "events_per_s": count / seconds,
        "rejected": rejected,
    }


# --- pipeline drain ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DrainSample:
    seconds: float
    """Since the worker process was started."""
    events: float
    rss: int
    cpu_seconds: float


def drain_pipeline(
    worker: WorkerProcess,
    expected: int,
    *,
    partitions: int,
    poll: float = 0.2,
    timeout: float = 300.0,
    profiler: Profiler | None = None,
    broker_pid: int | None = None,
) -> tuple[dict[str, float], list[DrainSample]]:
    """Start ``worker`` on prefilled topics and poll /metrics until it counted ``expected``.

    Marks: *assigned* = the worker reports all ``partitions`` source partitions assigned
    (consumer-group join and state recovery done); *first* = the first poll with
    ``cx_events_total > 0``; *done* = the first poll with ``cx_events_total >= expected``.
    The headline rate is (expected - events at *first*) / (done - first): startup, join and the
    first checkpoint interval are excluded. Rates from process start and from *assigned* are
    reported too, and how busy the machine's CPUs were (worker, broker, everything else) in the
    measured interval: on a shared machine, other load shows there.
    """
    machine = _CpuMeter(broker_pid)
    samples: list[DrainSample] = []
    scrape_seconds: list[float] = []
    spawn = time.perf_counter()
    worker.start()
    assigned_at = first_at = done_at = None
    first_events = 0.0
    cpu_at_first = cpu_at_assigned = cpu_at_done = 0.0
    last: MetricsSnapshot | None = None
    next_poll = spawn
    try:
        while True:
            next_poll += poll
            asked = time.perf_counter()
            snapshot = worker.snapshot()
            now = time.perf_counter()
            if now - spawn > timeout:
                counted = last.events if last else 0
                raise TimeoutError(
                    f"pipeline counted {counted:.0f} of {expected} events in {timeout:.0f} s"
                    f"\n{worker.log_tail()}"
                )
            if snapshot is not None:
                scrape_seconds.append(now - asked)
                last = snapshot
                cpu = worker.cpu_seconds()
                samples.append(DrainSample(now - spawn, snapshot.events, worker.rss(), cpu))
                if assigned_at is None and snapshot.assigned_partitions >= partitions:
                    assigned_at, cpu_at_assigned = now, cpu
                    if profiler is not None:
                        profiler.start(worker.pid)
                if first_at is None and snapshot.events > 0:
                    first_at, first_events, cpu_at_first = now, snapshot.events, cpu
                    machine.start()
                if snapshot.events >= expected:
                    done_at = now
                    cpu_at_done = cpu
                    machine.stop(cpu_at_done - cpu_at_first)
                    break
            time.sleep(max(0.0, next_poll - time.perf_counter()))
    finally:
        if profiler is not None:
            profiler.stop()
    assert first_at is not None and done_at is not None and last is not None
    if assigned_at is None:  # the gauge was missed between two polls: use the first count
        assigned_at, cpu_at_assigned = first_at, cpu_at_first
    # at least one poll: a tiny run can be counted in the very poll it was assigned in
    from_assigned = max(done_at - assigned_at, poll)
    steady_events = expected - first_events
    steady_seconds = done_at - first_at
    steady_measured = steady_events >= 0.25 * expected and steady_seconds > 0
    if steady_measured:
        headline = steady_events / steady_seconds
        cpu_seconds, cpu_events, cpu_wall = (
            cpu_at_done - cpu_at_first,
            steady_events,
            steady_seconds,
        )
    else:  # everything arrived in the first checkpoints (tiny runs): from assignment instead
        headline = expected / from_assigned
        cpu_seconds, cpu_events = cpu_at_done - cpu_at_assigned, expected
        cpu_wall = from_assigned
    figures = {
        "events": expected,
        "events_counted": last.events,
        "rejected": last.rejected,
        "duplicates": last.duplicates,
        "events_per_s": headline,
        "steady_measured": steady_measured,
        "seconds_steady": steady_seconds,
        "events_at_first_count": first_events,
        "events_per_s_from_assigned": expected / from_assigned,
        "events_per_s_from_start": expected / (done_at - spawn),
        "seconds_from_start": done_at - spawn,
        "startup_seconds": assigned_at - spawn,
        "first_count_seconds": first_at - spawn,
        "worker_cpu_seconds": cpu_seconds,
        "worker_cpu_us_per_event": cpu_seconds / cpu_events * 1e6,
        "worker_cpu_utilisation": cpu_seconds / cpu_wall if cpu_wall > 0 else 0.0,
        **machine.figures,
        "poll_seconds": poll,
        "scrape_ms_median": statistics.median(scrape_seconds) * 1000,
    }
    return figures, samples


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
