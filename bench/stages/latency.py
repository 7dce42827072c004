"""End-to-end latency: a paced producer stamps events with their send time, and /metrics says
when each was counted (see :func:`measure_latency`)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import statistics
import time
from collections.abc import Sequence

import aiohttp
import orjson

from bench.data import BenchRecord, make_producer, partition_of, send_records
from bench.harness import CpuMeter
from bench.worker import SNAPSHOT_SAMPLES, WorkerProcess, parse_metrics
from pipeline.tools.simulate import SimEvent

__all__ = ["measure_latency"]


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
    Percentiles are over events; poll granularity adds up to ``poll`` + one scrape. Polls ask
    for the counters by name (``?name[]=``): the same view state as a full scrape, without
    rendering every CX family ten times a second inside the worker being measured.
    """
    query = [("name[]", name) for name in SNAPSHOT_SAMPLES]

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
            async with session.get(f"{worker.url}/metrics", params=query) as response:
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
    meter = CpuMeter(broker_pid)
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
