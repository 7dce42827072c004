"""What a flush sends, in the order exactly-once needs: dead letters, links, forwards of
misplaced records and signals, then checkpoints, then the (advisory) offset commit.

A crash between steps replays from the last checkpoint: dead letters, links and forwards may
repeat, metrics never do, because the checkpoint is the single record that makes a range count
(and the receiving partition drops a repeated forward by its origin offset).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.links import encode_link
from pipeline.engine.partition import PartitionProcessor, Rejection
from pipeline.http.exposition import HealthMetrics
from pipeline.kafka.topics import checkpoint_partition, link_partition

log = logging.getLogger(__name__)

Commit = Callable[[dict[TopicPartition, int]], Awaitable[None]]


def dead_letter_headers(
    topic: str, partition: int, rejection: Rejection
) -> list[tuple[str, bytes]]:
    """Original headers plus Kafka-Connect-style error headers.

    A forwarded record's error headers name where its producer put it, not the repartition topic.
    """
    origin = rejection.origin
    if origin is not None:
        topic, partition = origin.topic, origin.partition
    return [
        *rejection.headers,
        ("cx.error.reason", rejection.reason.encode()),
        ("cx.error.detail", rejection.detail.encode()),
        ("cx.error.topic", topic.encode()),
        ("cx.error.partition", str(partition).encode()),
        ("cx.error.offset", str(rejection.offset).encode()),
    ]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    value: bytes | None
    key: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class Outbox:
    """What a flush must deliver: dead letters and links first, then checkpoints."""

    before: list[Record] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.before or self.checkpoints)


@dataclass
class Topology:
    """Topic names and partition counts the outbox routes to (known once the worker started)."""

    dead_letter: str
    link: str
    link_partitions: int
    checkpoints: str
    checkpoint_partitions: int
    signals: str
    repartition: dict[str, str] = field(default_factory=dict)
    """Source topic -> the topic its misplaced records are forwarded through."""


class Delivery:
    """Cuts each partition's output into the outbox and sends it; keeps it on failure."""

    def __init__(
        self, producer: AIOKafkaProducer, topology: Topology, health: HealthMetrics
    ) -> None:
        self.producer = producer
        self.topology = topology
        self.health = health
        self.outbox = Outbox()
        self.commit: Commit | None = None
        """Where delivered checkpoints' offsets are committed (the ingest consumer)."""

    def cut(self, tp: TopicPartition, processor: PartitionProcessor, now: float) -> None:
        """Move one partition's dead letters, links, forwards, signals and checkpoint into the
        outbox."""
        topology = self.topology
        for rejection in processor.rejected:
            self.outbox.before.append(
                Record(
                    topology.dead_letter,
                    rejection.value,
                    rejection.key,
                    None,
                    dead_letter_headers(tp.topic, tp.partition, rejection),
                )
            )
        self.health.dead_letters.inc(len(processor.rejected))
        processor.rejected.clear()
        for cart_id, time_, order_id in processor.take_links():
            self.outbox.before.append(
                Record(
                    topology.link,
                    encode_link(time_, order_id),
                    cart_id.encode(),
                    link_partition(cart_id, topology.link_partitions),
                )
            )
        forwards = processor.take_forwards()
        if forwards:
            repartition = topology.repartition[tp.topic]
            for forward in forwards:
                self.outbox.before.append(
                    Record(
                        repartition,
                        forward.value,
                        forward.key,
                        forward.partition,
                        forward.headers,
                    )
                )
        for key, signal in processor.take_signals():
            self.outbox.before.append(Record(topology.signals, orjson.dumps(signal), key.encode()))
        checkpoint = processor.take_checkpoint(now)
        if checkpoint is not None:
            self.outbox.checkpoints.append(checkpoint)

    async def deliver(self) -> bool:
        """Send the outbox: dead letters and links, then checkpoints, then commit offsets.

        On a send failure everything undelivered stays in the outbox for the next attempt (the
        ledger makes a checkpoint delivered twice count once).
        """
        outbox = self.outbox
        try:
            if outbox.before:
                await self._send_all(outbox.before)
                outbox.before = []
            if outbox.checkpoints:
                await self._send_all([self._checkpoint_record(c) for c in outbox.checkpoints])
        except KafkaError as error:
            self.health.broker_connected.set(0)
            log.warning("delivery failed (%s); retrying with the next flush", type(error).__name__)
            return False
        delivered, outbox.checkpoints = outbox.checkpoints, []
        self.health.checkpoints.inc(len(delivered))
        offsets = {
            TopicPartition(c.topic, c.partition): c.next_offset for c in delivered if c.next_offset
        }
        if offsets and self.commit is not None:
            try:
                await self.commit(offsets)
            except KafkaError as error:  # advisory only: checkpoints decide where we resume
                log.warning("offset commit failed (%s); checkpoints stay authoritative", error)
        return True

    async def drain(self) -> None:
        """Before partitions change hands, everything cut so far must be in the log."""
        while self.outbox and not await self.deliver():
            await asyncio.sleep(1.0)

    def _checkpoint_record(self, checkpoint: Checkpoint) -> Record:
        partition = checkpoint_partition(
            checkpoint.topic, checkpoint.partition, self.topology.checkpoint_partitions
        )
        return Record(self.topology.checkpoints, checkpoint.encode(), checkpoint.key(), partition)

    async def _send_all(self, records: list[Record]) -> None:
        """Send and await ``records``; those with a partition go as whole batches per partition
        (in order), which costs a tenth of one ``send()`` each (research/perf.md): forwards of
        misplaced records can be most of a flush."""
        by_partition: dict[tuple[str, int], list[Record]] = {}
        futures = []
        for record in records:
            if record.partition is None:
                futures.append(await self._send(record))
            else:
                by_partition.setdefault((record.topic, record.partition), []).append(record)
        for (topic, partition), part in by_partition.items():
            futures += await self._send_batches(topic, partition, part)
        await asyncio.gather(*futures)

    async def _send_batches(
        self, topic: str, partition: int, records: list[Record]
    ) -> list[asyncio.Future[Any]]:
        futures = []
        batch = self.producer.create_batch()
        for r in records:
            appended = batch.append(
                key=r.key, value=r.value, timestamp=None, headers=r.headers or []
            )
            if appended is None:  # full: send it and start the next one
                futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                batch = self.producer.create_batch()
                if (
                    batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers or [])
                    is None
                ):
                    futures.append(await self._send(r))  # larger than a batch: on its own
        if batch.record_count():
            futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures

    async def _send(self, r: Record) -> asyncio.Future[Any]:
        if r.key is None and r.value is None:
            # a dead letter of a record with neither (a keyless tombstone, or one the client
            # could not parse): producer.send refuses that, a batch of its own does not
            batch = self.producer.create_batch()
            batch.append(key=None, value=None, timestamp=None, headers=r.headers or [])
            return await self.producer.send_batch(batch, r.topic, partition=r.partition or 0)
        return await self.producer.send(
            r.topic, value=r.value, key=r.key, partition=r.partition, headers=r.headers
        )
