"""A bare aiokafka consumer on every partition of some topics, from the beginning: what the
ceilings read with and how a checkpoint log is read back whole."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness.meter import MB

__all__ = ["read_log", "reader"]


@contextlib.asynccontextmanager
async def reader(
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


async def read_log(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of ``topic``, up to the end offsets AND an empty fetch (Tansu reports a
    multi-record batch's base offset + 1 as the end, so the offset alone stops short)."""
    async with reader(bootstrap, [topic], partition_fetch_bytes=64 * MB) as (consumer, tps):
        end = await consumer.end_offsets(tps)
        values: list[bytes] = []
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                values.extend(record.value for record in records if record.value is not None)
            if not batch and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                return values
