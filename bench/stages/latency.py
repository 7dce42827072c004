"""End-to-end latency: a paced producer stamps events with their send time, and /metrics says
when each was counted (see :func:`measure_latency`)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.data import (
    BenchRecord,
    create_source_topics,
    make_producer,
    partition_of,
    send_records,
)
from bench.harness import CpuMeter, frozen_heap
from bench.worker import SNAPSHOT_SAMPLES, WorkerProcess, parse_metrics
from pipeline.kafka.clients import FETCH_MAX_WAIT_MS
from pipeline.tools.simulate import SimEvent

__all__ = ["PacedLoad", "measure_broker_hop", "measure_latency"]


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


@dataclass(frozen=True)
class PacedLoad:
    """What the latency stages send: ``events`` at ``rate``/s for ``seconds`` to the source
    topics under ``prefix`` (``partitions`` each), a batch per partition every ``tick``."""

    bootstrap: str
    prefix: str
    events: Sequence[SimEvent]
    rate: float
    seconds: float
    partitions: int
    tick: float = 0.02

    @property
    def total(self) -> int:
        return min(len(self.events), max(1, int(self.rate * self.seconds)))


class PacedSend:
    """Sends a :class:`PacedLoad`: every ``tick`` the events due are stamped with the wall time
    (``occurred_at``) and sent as one batch per partition, as a producer with a short linger
    would. ``sends`` lists (wall time of the send, cumulative events sent)."""

    def __init__(self, load: PacedLoad, prefix: str) -> None:
        cache: dict[bytes, int] = {}
        self.prepared = [  # everything but the time stamp, outside the paced loop
            (event.topic, partition_of(key, load.partitions, cache), key, event.value)
            for event in load.events[: load.total]
            for key in (event.key.encode(),)
        ]
        self.load, self.prefix = load, prefix
        self.sends: list[tuple[float, int]] = []
        self.began = self.seconds = 0.0

    async def run(
        self,
        on_start: Callable[[], None] = lambda: None,
        on_sent: Callable[[], None] = lambda: None,
    ) -> None:
        """Send everything and wait for every acknowledgement; ``on_start`` and ``on_sent``
        bracket the paced sends (not the wait for the last acknowledgements)."""
        producer = make_producer(self.load.bootstrap)
        await producer.start()
        dumps, prepared, total = orjson.dumps, self.prepared, len(self.prepared)
        rate, tick = self.load.rate, self.load.tick
        futures: list[asyncio.Future[object]] = []
        try:
            self.began = began = time.time()
            on_start()
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
                    futures.extend(await send_records(producer, self.prefix, records))
                    self.sends.append((now, due))
                    sent = due
                await asyncio.sleep(max(0.0, tick - (time.time() - now)))
            self.seconds = time.time() - began
            on_sent()
            await asyncio.gather(*futures)
        finally:
            await producer.stop()


async def measure_latency(
    worker: WorkerProcess,
    load: PacedLoad,
    *,
    poll: float = 0.1,
    broker_pid: int | None = None,
    settle_timeout: float = 30.0,
) -> dict[str, float]:
    """Produce ``load`` with ``occurred_at`` = send time.

    Every ``tick`` the events due are stamped with the current wall time and sent as batches;
    /metrics is polled every ``poll`` s. An event's latency is the time from its send to the
    first poll whose ``cx_events_total`` reached the cumulative count including it (the
    pipeline counts whole checkpoints, so "counted" means its checkpoint reached the view).
    Percentiles are over events; poll granularity adds up to ``poll`` + one scrape. Polls ask
    for the counters by name (``?name[]=``): the same view state as a full scrape, without
    rendering every CX family ten times a second inside the worker being measured.
    """
    query = [("name[]", name) for name in SNAPSHOT_SAMPLES]

    total = load.total
    text_before = await asyncio.to_thread(worker.metrics_text)
    base = parse_metrics(text_before).events
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

    paced = PacedSend(load, load.prefix)
    sends = paced.sends
    meter = CpuMeter(broker_pid)
    cpu_began = 0.0

    def started() -> None:
        nonlocal cpu_began
        cpu_began = worker.cpu_seconds()
        meter.start()

    def sent() -> None:
        meter.stop(worker.cpu_seconds() - cpu_began)

    with frozen_heap():  # a full collection of the prepared events stalled sends by ~0.5-0.8 s
        harness_full_gcs = gc.get_stats()[2]["collections"]  # after the freeze's own
        async with aiohttp.ClientSession() as session:
            polling = asyncio.create_task(poller(session))
            try:
                await paced.run(started, sent)
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
    harness_full_gcs = gc.get_stats()[2]["collections"] - harness_full_gcs
    began, produced_for = paced.began, paced.seconds
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
        "target_events_per_s": load.rate,
        "events": total,
        "seconds": produced_for,
        "events_per_s": total / produced_for,
        "p50_ms": _weighted_percentile(latencies, 0.50) * 1000,
        "p90_ms": _weighted_percentile(latencies, 0.90) * 1000,
        "p99_ms": _weighted_percentile(latencies, 0.99) * 1000,
        "max_ms": max(value for value, _ in latencies) * 1000,
        "mean_ms": sum(v * w for v, w in latencies) / total * 1000,
        "poll_ms": poll * 1000,
        "tick_ms": load.tick * 1000,
        "scrape_ms_median": statistics.median(scrape_seconds) * 1000,
        "worker_cpu_utilisation": (worker.cpu_seconds() - cpu_began) / (time.time() - began),
        **meter.figures,
        "max_ms_per_second": [round(max(values) * 1000) for _, values in sorted(timeline.items())],
        "full_gc_collections": full_gcs[-1][1] - full_gcs[0][1],
        "harness_full_gc_collections": harness_full_gcs,
        "full_gc_seen_at_seconds": [round(t, 1) for t in gc_seen],
    }


async def measure_broker_hop(load: PacedLoad, *, settle_timeout: float = 30.0) -> dict[str, float]:
    """The floor under :func:`measure_latency`: the same paced sends, to fresh topics on the same
    broker, read by a bare aiokafka consumer with the worker's fetch settings.

    Send to receipt is one hop through the broker; an event's way into /metrics takes two
    (source topic to the worker, its checkpoint to the view) plus a flush and a poll. Run with
    no worker attached, so the broker serves this consumer alone.
    """
    hop_prefix = f"{load.prefix}hop-"
    topics = await create_source_topics(load.bootstrap, hop_prefix, load.partitions)
    total = load.total
    paced = PacedSend(load, hop_prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=load.bootstrap,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
    )
    await consumer.start()
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(load.partitions)])
    received: list[tuple[float, float]] = []  # (send time stamped by the producer, receipt)

    async def consume() -> None:
        while len(received) < total:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            received.extend((r.timestamp / 1000, now) for part in batch.values() for r in part)

    try:
        with frozen_heap():
            reading = asyncio.create_task(consume())
            await paced.run()
            await asyncio.wait_for(reading, settle_timeout)
    finally:
        await consumer.stop()
    hops = [(got - sent, 1) for sent, got in received]
    timeline: dict[int, float] = {}
    for sent, got in received:
        second = int(sent - paced.began)
        timeline[second] = max(timeline.get(second, 0.0), got - sent)
    return {
        "events": total,
        "events_per_s": total / paced.seconds,
        "p50_ms": _weighted_percentile(hops, 0.50) * 1000,
        "p99_ms": _weighted_percentile(hops, 0.99) * 1000,
        "max_ms": max(value for value, _ in hops) * 1000,
        "max_ms_per_second": [round(value * 1000) for _, value in sorted(timeline.items())],
    }
