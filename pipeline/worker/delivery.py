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
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.links import encode_link
from pipeline.engine.partition import MAX_KEY_BYTES, PartitionProcessor, Rejection
from pipeline.engine.placement import canonical_partition
from pipeline.http.exposition import HealthMetrics
from pipeline.kafka.topics import checkpoint_partition, link_partition

log = logging.getLogger(__name__)

Commit = Callable[[dict[TopicPartition, int]], Awaitable[None]]

SAFE_DEAD_LETTER_BYTES = 1_000_000
"""What any Kafka takes by default (``max.message.bytes`` 1 MB): a dead-letter topic created
before the pipeline, with its broker's default, refuses a larger dead letter."""


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
    partition: int
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class Outbox:
    """What a flush must deliver: dead letters and links first, then checkpoints."""

    before: list[Record] = field(default_factory=list)
    checkpoints: list[tuple[Checkpoint, Record]] = field(default_factory=list)
    """Each checkpoint with its record, encoded when cut: entity state is mutated in place by
    later events, so a checkpoint re-encoded on a retry after an outage would carry effects of
    records past its offset, and a replay from that offset would apply them twice."""

    def __bool__(self) -> bool:
        return bool(self.before or self.checkpoints)


@dataclass
class Topology:
    """Topic names and partition counts the outbox routes to (known once the worker started)."""

    dead_letter: str
    dead_letter_partitions: int
    link: str
    link_partitions: int
    checkpoints: str
    checkpoint_partitions: int
    signals: str
    signals_partitions: int
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
            key = rejection.key
            self.outbox.before.append(
                Record(
                    topology.dead_letter,
                    rejection.value,
                    key,
                    canonical_partition(key, topology.dead_letter_partitions)
                    if key
                    else tp.partition % topology.dead_letter_partitions,
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
        for entity_id, signal in processor.take_signals():
            key = entity_id.encode()
            self.outbox.before.append(
                Record(
                    topology.signals,
                    orjson.dumps(signal),
                    key,
                    canonical_partition(key, topology.signals_partitions),
                )
            )
        checkpoint = processor.take_checkpoint(now)
        if checkpoint is not None:
            self.outbox.checkpoints.append((checkpoint, self._checkpoint_record(checkpoint)))

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
                await self._send_all([record for _, record in outbox.checkpoints])
        except MessageSizeTooLargeError:
            # refused for good as it is: retried unchanged it would hold every later flush
            if not self._cut_large_dead_letters():
                log.warning("delivery refused as too large; retrying with the next flush")
            return False
        except KafkaError as error:
            self.health.broker_connected.set(0)
            log.warning("delivery failed (%s); retrying with the next flush", type(error).__name__)
            return False
        delivered, outbox.checkpoints = outbox.checkpoints, []
        self.health.checkpoints.inc(len(delivered))
        offsets = {
            TopicPartition(c.topic, c.partition): c.next_offset
            for c, _ in delivered
            if c.next_offset
        }
        if offsets and self.commit is not None:
            try:
                await self.commit(offsets)
            except KafkaError as error:  # advisory only: checkpoints decide where we resume
                log.warning("offset commit failed (%s); checkpoints stay authoritative", error)
        return True

    def _cut_large_dead_letters(self) -> int:
        """Replace each dead letter past ``SAFE_DEAD_LETTER_BYTES`` with its error headers alone
        (the original still lies where they say), the value's size in ``cx.error.truncated``.
        Returns how many were cut."""
        dead_letter, cut = self.topology.dead_letter, 0
        for i, record in enumerate(self.outbox.before):
            if record.topic != dead_letter or _record_size(record) <= SAFE_DEAD_LETTER_BYTES:
                continue
            size = len(record.value or b"")
            headers = [(k, v) for k, v in record.headers or [] if k.startswith("cx.error.")]
            headers.append(("cx.error.truncated", str(size).encode()))
            key = record.key if record.key is None or len(record.key) <= MAX_KEY_BYTES else None
            self.outbox.before[i] = Record(dead_letter, None, key, record.partition, headers)
            log.warning("a dead letter was too large for the broker: sent without its record")
            cut += 1
        return cut

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
        """Send and await ``records`` as whole batches per partition (in order): a batch costs
        a tenth of one ``send()`` per record (research/perf.md), and a flush can carry many
        forwards of misplaced records, or a backfill's hundred thousand signals at once.

        Every record names its partition (murmur2 of the key where Kafka's default partitioner
        would have used it), so keyed consumers see what a plain producer would have given them.
        """
        by_partition: dict[tuple[str, int], list[Record]] = {}
        for record in records:
            by_partition.setdefault((record.topic, record.partition), []).append(record)
        futures = []
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
                    # larger than a batch: on its own
                    futures.append(
                        await self.producer.send(
                            topic, value=r.value, key=r.key, partition=partition, headers=r.headers
                        )
                    )
        if batch.record_count():
            futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures


def _record_size(record: Record) -> int:
    headers = sum(len(k) + len(v or b"") for k, v in record.headers or [])
    return len(record.value or b"") + len(record.key or b"") + headers
