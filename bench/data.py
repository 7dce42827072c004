"""Benchmark data: a realistic event mix from the shop simulator, and fast production of it.

The mix is whatever :class:`pipeline.simulate.ShopSimulator` makes of ``history`` seconds of shop
traffic ending now (carts dominate, as in real shops; orders, tickets and surveys follow). Every
event lies inside the longest window (24 h), so the pipeline aggregates all of them and none is
late. Production goes through ``create_batch``/``send_batch`` with the partition computed here
(the Java client's murmur2, as the default partitioner would), ~10x faster than one ``send()``
per event (research/perf.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from pipeline.simulate import ShopSimulator, SimEvent
from pipeline.topics import SOURCE_TOPICS

__all__ = [
    "BenchRecord",
    "create_source_topics",
    "encode_events",
    "mix_of",
    "partition_of",
    "produce_records",
    "realistic_events",
]

_SLICE = 300.0  # seconds of simulated time generated per step


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """One record to produce: ``topic`` is the short name, ``partition`` already chosen."""

    topic: str
    partition: int
    key: bytes
    value: bytes


def realistic_events(count: int, *, seed: int, history: float, now: float) -> list[SimEvent]:
    """The first ``count`` events of ``history`` seconds of simulated shop traffic up to ``now``.

    The simulator's rate is calibrated from its own day/night profile so that the history holds
    about 10 % more than ``count`` events; if it still falls short the rate grows and the run is
    repeated (same seed, so the result is deterministic for a given ``now``).
    """
    if count <= 0:
        return []
    start = now - history
    probe = ShopSimulator(rate=1.0, seed=seed, start=start)
    steps = max(1, math.ceil(history / 60))
    per_unit_rate = sum(
        probe.expected_rate(start + (i + 0.5) * history / steps) * history / steps
        for i in range(steps)
    )
    rate = 1.1 * count / per_unit_rate
    for _ in range(8):
        simulator = ShopSimulator(rate=rate, seed=seed, start=start)
        events: list[SimEvent] = []
        t = start
        while len(events) < count and t < now:
            t = min(now, t + _SLICE)
            events.extend(simulator.events_until(t))
        if len(events) >= count:
            return events[:count]
        rate *= 1.5 * count / max(len(events), 1)
    raise RuntimeError(f"the simulator did not produce {count} events")  # pragma: no cover


def partition_of(key: bytes, partitions: int, cache: dict[bytes, int] | None = None) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, positive, modulo)."""
    if cache is not None:
        found = cache.get(key)
        if found is not None:
            return found
    partition = (murmur2(key) & 0x7FFFFFFF) % partitions
    if cache is not None:
        cache[key] = partition
    return partition


def encode_events(events: Iterable[SimEvent], partitions: int) -> list[BenchRecord]:
    """Serialize events (orjson, key = entity id) and place them on their partitions."""
    dumps = orjson.dumps
    cache: dict[bytes, int] = {}
    records = []
    for event in events:
        key = event.key.encode()
        records.append(
            BenchRecord(event.topic, partition_of(key, partitions, cache), key, dumps(event.value))
        )
    return records


def mix_of(events: Sequence[SimEvent]) -> dict[str, dict[str, int]]:
    """Counts per topic and per event type (for the report)."""
    topics = Counter(event.topic for event in events)
    types = Counter(str(event.value["event_type"]) for event in events)
    return {"topics": dict(topics.most_common()), "event_types": dict(types.most_common())}


async def create_source_topics(bootstrap: str, prefix: str, partitions: int) -> list[str]:
    """Create ``<prefix>carts/orders/tickets/surveys`` with ``partitions`` each (kept if present)."""
    names = [prefix + short for short in SOURCE_TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
    return names


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer for whole batches: big batches, no compression, leader acks."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        linger_ms=0,
    )


async def send_records(
    producer: AIOKafkaProducer, prefix: str, records: Iterable[BenchRecord]
) -> list[asyncio.Future[object]]:
    """Enqueue ``records`` as full batches per partition (order kept within a partition).

    Returns the delivery futures; the caller awaits them.
    """
    by_partition: dict[tuple[str, int], list[BenchRecord]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(record)
    futures: list[asyncio.Future[object]] = []
    for (topic, partition), part in by_partition.items():
        batch = producer.create_batch()
        for record in part:
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                futures.append(
                    await producer.send_batch(batch, prefix + topic, partition=partition)
                )
                batch = producer.create_batch()
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(record.value)} bytes fits no batch")
        if batch.record_count():
            futures.append(await producer.send_batch(batch, prefix + topic, partition=partition))
    return futures


async def produce_records(bootstrap: str, prefix: str, records: Sequence[BenchRecord]) -> float:
    """Produce every record and wait for all acknowledgements; returns the seconds it took."""
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        began = time.perf_counter()
        futures = await send_records(producer, prefix, records)
        await asyncio.gather(*futures)
        return time.perf_counter() - began
    finally:
        await producer.stop()
