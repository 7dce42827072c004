"""How the pipeline's aiokafka clients wait, read a log to its end, and shut down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.kafka.topics import SNAPSHOT_MAX_BYTES
from pipeline.settings import Settings

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 100
"""Long-poll limit of the pipeline's consumers. Tansu answers a fetch only when this expires,
even once data has arrived (measured: 202 ms median per hop at aiokafka's default 500, 27 ms at
100); Apache Kafka answers as soon as data is there, so a short wait only adds idle polls."""

SHUTDOWN_STEP_TIMEOUT = 3.0
"""Seconds one shutdown step may take; a dead broker must not make a stop hang."""


async def bounded_shutdown(step: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_TIMEOUT)
    except (TimeoutError, KafkaError, OSError) as error:
        log.warning("shutdown step skipped: %s", type(error).__name__)


async def read_partitions(
    settings: Settings, topic: str, starts: dict[int, int]
) -> list[tuple[bytes | None, bytes | None]]:
    """Records of some partitions, each from a start offset to the end: (key, value) pairs.

    "The end" is where the reported end offset is passed AND a fetch comes back empty: Tansu
    reports a multi-record batch's base offset + 1 as the end, so the offset alone stops short.
    A start below the log start (retention) reads from the log start; a negative start counts
    back from the end (-1: the last record, when it was produced alone).
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=SNAPSHOT_MAX_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in starts]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            start = starts[tp.partition]
            consumer.seek(tp, start if start >= 0 else max(0, end[tp] + start))
        records: list[tuple[bytes | None, bytes | None]] = []
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=200, max_records=10_000)
            for part in batch.values():
                records.extend((r.key, r.value) for r in part)
            if not batch and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                return records
    finally:
        await consumer.stop()
