"""Run real workers as subprocesses against the session's broker, and read their /metrics.

The worker subprocess itself (:class:`~bench.worker.WorkerProcess`, :func:`parse_samples`,
:func:`free_port`) is the benchmark's, so tests and benchmark start and probe it the same way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bench.worker import Samples, WorkerProcess, free_port, parse_samples, worker_env

__all__ = [
    "PARTITIONS",
    "Pipeline",
    "Samples",
    "WorkerProcess",
    "consume_all",
    "cx_samples",
    "default_partition",
    "event_records",
    "free_port",
    "parse_samples",
    "produce",
    "produce_events",
    "wait_for",
]

PARTITIONS = 4
"""Partitions of every topic a test pipeline creates."""


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> object:
    """Poll ``predicate`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})"
    )


@dataclass
class Pipeline:
    """One isolated pipeline deployment (own topic prefix and app id) on a shared broker."""

    bootstrap: str
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"t{self.name}."

    def env(self) -> dict[str, str]:
        common = worker_env(
            bootstrap=self.bootstrap,
            prefix=self.prefix,
            app_id=f"cxt-{self.name}",
            flush_interval="0.2",
            source_partitions=str(PARTITIONS),
        )
        return common | self.extra_env

    def start_worker(self, log_dir: Path) -> WorkerProcess:
        worker = WorkerProcess(self.env(), log_dir / f"worker-{len(self.workers)}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def default_partition(key: bytes, partitions: int = PARTITIONS) -> int:
    """Where aiokafka's default partitioner (murmur2, as Java's) puts ``key``: the oracle for
    records the worker places itself (signals, dead letters)."""
    every = list(range(partitions))
    return DefaultPartitioner()(key, every, every)


def cx_samples(samples: Samples, names: Iterable[str]) -> Samples:
    wanted = set(names)
    return {key: value for key, value in samples.items() if key[0] in wanted}


def produce(
    bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes | None]], headers=None
) -> int:
    """Produce (topic, key, value) with a plain aiokafka producer; returns the count."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value=value, key=key, headers=headers or [])
                for topic, key, value in records
            ]
            await asyncio.gather(*futures)
            return len(futures)
        finally:
            await producer.stop()

    return asyncio.run(run())


def event_records(prefix: str, events: Iterable[dict]) -> list[tuple[str, bytes, bytes]]:
    """Contract events as (topic, key, value) records: their topic and the contract's key."""
    routes = {
        "cart": ("carts", "cart_id"),
        "checkout": ("carts", "cart_id"),
        "order": ("orders", "order_id"),
        "ticket": ("tickets", "ticket_id"),
        "survey": ("surveys", "response_id"),
    }
    records = []
    for event in events:
        topic, key_field = routes[event["event_type"].split(".")[0]]
        records.append((prefix + topic, str(event[key_field]).encode(), orjson.dumps(event)))
    return records


def produce_events(bootstrap: str, prefix: str, events: Iterable[dict]) -> int:
    """Produce contract events to their topics with the contract's key."""
    return produce(bootstrap, event_records(prefix, events))


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list:
    """All records of ``topic`` once at least ``expected`` are there."""

    async def run() -> list:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            records: list = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for part in batch.values():
                    records.extend(part)
                if len(records) >= expected:
                    # drain anything else already there, then stop
                    extra = await consumer.getmany(timeout_ms=300)
                    for part in extra.values():
                        records.extend(part)
                    return records
            raise AssertionError(f"only {len(records)} of {expected} records in {topic}")
        finally:
            await consumer.stop()

    return asyncio.run(run())
