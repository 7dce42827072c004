"""`pipeline.act.rewind` against the real broker and aiokafka: records Faust fetched and dropped
are fetched again where the group committed nothing, and nowhere else."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from pipeline.act.rewind import rewind_uncommitted

pytestmark = pytest.mark.integration

RECORDS = 3


async def _fill(bootstrap: str, *topics: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic in topics:
            for i in range(RECORDS):
                await producer.send_and_wait(topic, b"v%d" % i, key=b"k", partition=0)
    finally:
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, want: int) -> list[int]:
    """Offsets fetched for ``tp`` until ``want`` came or 3 s passed (fewer on a bug)."""
    offsets: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    while len(offsets) < want and loop.time() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=200)
        offsets += [record.offset for record in batch.get(tp, [])]
    return offsets


async def _scenario(bootstrap: str) -> dict[str, list[int]]:
    run = uuid.uuid4().hex[:8]
    fresh, committed, changelog = f"rw-{run}-fresh", f"rw-{run}-done", f"rw-{run}-x-changelog"
    await _fill(bootstrap, fresh, committed, changelog)
    tps = {name: TopicPartition(name, 0) for name in (fresh, committed, changelog)}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"rw-{run}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(list(tps.values()))
        await consumer.commit({tps[committed]: OffsetAndMetadata(1, "")})
        for tp in tps.values():  # fetched, and then dropped by Faust: the position moved on
            await consumer.seek_to_beginning(tp)
            assert await _read(consumer, tp, RECORDS) == list(range(RECORDS))
        await rewind_uncommitted(consumer)
        return {name: await _read(consumer, tp, RECORDS) for name, tp in tps.items()}
    finally:
        await consumer.stop()


def test_only_partitions_without_a_commit_are_read_again_from_the_start(broker):
    again = asyncio.run(_scenario(broker.bootstrap))
    fresh, committed, changelog = again.values()
    assert fresh == list(range(RECORDS)), "a partition the group never committed starts over"
    assert committed == [1, 2], "a committed one resumes at its commit"
    assert changelog == [], "table recovery positions changelogs itself"
