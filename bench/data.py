"""Benchmark data: a realistic event mix from the shop simulator, hostile records to mix into it,
and fast production of both.

The mix is whatever :class:`pipeline.simulate.ShopSimulator` makes of ``history`` seconds of shop
traffic ending now (carts dominate, as in real shops; orders, tickets and surveys follow). Every
event lies inside the longest window (24 h), so the pipeline aggregates all of them and none is
late. Production goes through ``create_batch``/``send_batch`` with the partition computed here
(the Java client's murmur2, as the default partitioner would), ~10x faster than one ``send()``
per event (research/perf.md).

The hostile corpus (:func:`hostile_record`, :func:`hostile_corpus`) is also what
tests/integration/test_reliability_e2e.py feeds a worker: one definition of "garbage".
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from pipeline.tools.simulate import ShopSimulator, SimEvent
from pipeline.topics import SOURCE_TOPICS
from schemas import EventRejected, decode_record

__all__ = [
    "BenchRecord",
    "HostileMix",
    "create_source_topics",
    "encode_events",
    "hostile_corpus",
    "hostile_record",
    "mix_garbage",
    "mix_of",
    "partition_distribution",
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


def partition_distribution(records: Sequence[BenchRecord], partitions: int) -> dict[str, Any]:
    """Records per source partition, the unit of parallelism of a consumer group.

    ``max_partition_share`` bounds scale-out: however many workers, one of them carries at least
    the hottest partition, so ingest can spread over at most ``1 / max_partition_share``.
    """
    counts = Counter((record.topic, record.partition) for record in records)
    by_partition = {
        topic: [counts[(topic, partition)] for partition in range(partitions)]
        for topic in SOURCE_TOPICS
    }
    (topic, partition), most = counts.most_common(1)[0]
    total = len(records)
    return {
        "partitions": len(SOURCE_TOPICS) * partitions,
        "events_by_partition": by_partition,
        "max_partition": f"{topic}[{partition}]",
        "max_partition_share": most / total,
        "min_partition_share": min(min(counts) for counts in by_partition.values()) / total,
    }


# --- hostile input ---------------------------------------------------------------------------
Hostile = tuple[bytes | None, bytes]
"""A hostile record: (key, value)."""

_INT_MEMBER = re.compile(rb'"\w+":(-?\d+)(?=[,}])')


def hostile_record(rng: random.Random, valid: bytes) -> Hostile:
    """One random hostile record made from the value of a valid record.

    Random bytes (mostly not UTF-8), truncated JSON, one byte flipped to non-ASCII, a field set
    to a wrong type or value, nesting deeper than the contract's 64 levels, or a bad
    ``occurred_at``; the key is missing, empty or wrong.
    """
    kind = rng.randrange(6)
    if kind == 0:
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    elif kind == 1:
        value = valid[: rng.randrange(1, len(valid))]
    elif kind == 2:
        cut = rng.randrange(len(valid))
        value = valid[:cut] + bytes([rng.randrange(128, 256)]) + valid[cut + 1 :]
    elif kind == 3:
        event = orjson.loads(valid)
        field = rng.choice(list(event))
        event[field] = rng.choice([None, 1e308, -1, "", [], {}, True, "x" * 300, "NaN"])
        value = orjson.dumps(event)
    elif kind == 4:
        depth = rng.randrange(65, 200)
        value = b'{"event_id": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}"
    else:
        value = orjson.dumps(
            {
                **orjson.loads(valid),
                "occurred_at": rng.choice(
                    [
                        "2026-01-01T00:00:00",
                        "1999-01-01",
                        "9999-12-31T23:59:59Z",
                        "yesterday",
                        1700000000,
                    ]
                ),
            }
        )
    return rng.choice([None, b"", b"k", bytes(rng.randrange(256) for _ in range(8))]), value


def _oversized(valid: bytes) -> bytes:
    return b"{" + b" " * 300_000 + b"}"  # valid JSON, above the 256 KiB record limit


def _huge_number(valid: bytes) -> bytes:
    """The last integer member (a survey's score) with 41 digits."""
    *_, last = _INT_MEMBER.finditer(valid)  # every contract event has schema_version
    start, end = last.span(1)
    return valid[:start] + b"1" + b"0" * 40 + valid[end:]


def _nan_literal(valid: bytes) -> bytes:
    return valid[:-1] + b',"score":NaN}'  # not JSON, though Python's json would accept it


def _unknown_type(valid: bytes) -> bytes:
    return orjson.dumps({**orjson.loads(valid), "event_type": "cart.teleported"})


def _not_an_object(valid: bytes) -> bytes:
    return b"[" + valid + b"]"


NAMED_HOSTILE: tuple[Callable[[bytes], bytes], ...] = (
    _oversized,
    _huge_number,
    _nan_literal,
    _unknown_type,
    _not_an_object,
)
"""Hand-picked hostile values, each made from a valid value (sent with the wrong key ``k``)."""


def hostile_corpus(rng: random.Random, valid: bytes, count: int = 200) -> list[Hostile]:
    """``count`` random hostile records plus one of each hand-picked kind."""
    records = [hostile_record(rng, valid) for _ in range(count)]
    return records + [(b"k", make(valid)) for make in NAMED_HOSTILE]


def _rejection(topic: str, key: bytes | None, value: bytes, now: float) -> str | None:
    """The contract's reason to reject the record (the worker's limits), None if it is valid."""
    try:
        decode_record(topic, key, value, now=now)
    except EventRejected as rejected:
        return rejected.reason
    return None


_NAMED_RATE = 0.01
"""Share of garbage after the first of each kind that is hand-picked (a fifth oversized)."""


def _garbage_for(
    rng: random.Random, valid: BenchRecord, index: int, now: float
) -> tuple[Hostile, str]:
    """A hostile record made from ``valid`` and the reason the contract rejects it."""
    for _ in range(20):
        if index < len(NAMED_HOSTILE) or rng.random() < _NAMED_RATE:
            make = NAMED_HOSTILE[index % len(NAMED_HOSTILE)]
            key, value = b"k", make(valid.value)
        else:
            key, value = hostile_record(rng, valid.value)
        reason = _rejection(valid.topic, key, value, now)
        if reason is not None:
            return (key, value), reason
        index += 1
    raise RuntimeError("no hostile record the contract rejects")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class HostileMix:
    records: list[BenchRecord]
    garbage: int
    reasons: dict[str, int]
    """Rejection reason -> garbage records the contract rejects for it."""


def mix_garbage(
    records: Sequence[BenchRecord], *, share: float, seed: int, now: float
) -> HostileMix:
    """``records`` with garbage interleaved evenly, ``share`` of the result.

    Each garbage record is made from the valid record before it and goes to the same partition,
    so every partition carries garbage among its events. Candidates the contract would accept
    (a mutation that happens to stay valid) are not garbage and are replaced, so every garbage
    record must be dead-lettered: rejected count == garbage count.
    """
    rng = random.Random(seed)
    wanted = round(len(records) * share / (1 - share))
    mixed: list[BenchRecord] = []
    reasons: Counter[str] = Counter()
    made = 0
    for index, record in enumerate(records):
        mixed.append(record)
        while made < (index + 1) * wanted // len(records):
            (key, value), reason = _garbage_for(rng, record, made, now)
            mixed.append(BenchRecord(record.topic, record.partition, key, value))
            reasons[reason] += 1
            made += 1
    return HostileMix(mixed, made, dict(reasons.most_common()))


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
