"""The Kafka side of the collector: all of a request's records acked (acks=all), or an error.

Records are placed with Kafka's default partitioner (murmur2 of the key), as a Java or aiokafka
producer would, and handed to :class:`~pipeline.collector.batching.PartitionBatcher`, which
sends whole batches (``send_batch``: ~8x faster than one ``send()`` per event, research/perf.md).
The number of records awaiting acks is bounded: past it a request is refused whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import defaultdict

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from pipeline.collector.batching import Header, Partition, PartitionBatcher, PendingRecord
from pipeline.collector.config import CollectorSettings
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.triage import Rejection, Triage
from pipeline.kafka.topics import DEAD_LETTER
from pipeline.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTER_SOURCE = "http"
"""``cx.error.topic`` of a collector dead letter: it never was on a Kafka topic."""
_PROBE_INTERVAL = 1.0
_PROBE_TIMEOUT = 2.0
_MAX_BATCH_BYTES = 1_048_576


@functools.lru_cache(maxsize=65_536)
def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key); cached: aiokafka's murmur2 is pure
    Python and an entity's events keep coming with the same key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Unavailable(Exception):
    """Kafka cannot take the request now; ``reason`` is a bounded metric label (503)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def dead_letter_headers(rejection: Rejection) -> list[Header]:
    """The worker's dead-letter headers; partition and offset are the item's place (-1, index)."""
    return [
        ("cx.error.reason", rejection.reason.encode()),
        ("cx.error.detail", rejection.detail.encode()),
        ("cx.error.topic", DEAD_LETTER_SOURCE.encode()),
        ("cx.error.partition", b"-1"),
        ("cx.error.offset", str(rejection.index).encode()),
    ]


class EventProducer:
    def __init__(
        self, settings: Settings, collector: CollectorSettings, metrics: CollectorMetrics
    ) -> None:
        self.settings = settings
        self.collector = collector
        self.metrics = metrics
        self.reachable = False
        self._pending = 0
        self._producer = AIOKafkaProducer(
            **settings.kafka_client_options(),
            acks="all",
            linger_ms=0,  # send_batch hands over whole batches; nothing to wait for
            # a dead letter keeps a rejected item whole, up to a whole body
            max_batch_size=max(_MAX_BATCH_BYTES, collector.max_body + 65_536),
            request_timeout_ms=int(collector.produce_timeout * 1000),
            client_id="cx-collector",
        )
        self._batcher = PartitionBatcher(self._producer)
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()
        self._set_reachable(True)
        self._probe = asyncio.create_task(self._probe_forever(), name="collector-broker-probe")

    async def stop(self) -> None:
        """Flush what is queued (acks awaited) and close."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._producer.stop()

    def _set_reachable(self, value: bool, cause: object = None) -> None:
        if value != self.reachable:
            log.warning("broker %s%s", "reachable" if value else "unreachable: ", cause or "")
        self.reachable = value
        self.metrics.broker_up.set(1 if value else 0)

    async def _probe_forever(self) -> None:
        """Keep ``reachable`` current, so a down broker fails requests fast and recovery shows."""
        while True:
            try:
                async with asyncio.timeout(_PROBE_TIMEOUT):
                    await self._producer.client.fetch_all_metadata()
                self._set_reachable(True)
            except (TimeoutError, KafkaError, OSError) as error:
                self._set_reachable(False, f"metadata probe failed ({error!r})")
            await asyncio.sleep(_PROBE_INTERVAL)

    async def deliver(self, triage: Triage) -> None:
        """Produce accepted records and dead letters; return once Kafka acked all of them.

        Raises :class:`Unavailable` when the broker is unreachable, the buffer is full, or acks
        do not arrive in time. Records already queued may still land: a client retry then makes
        duplicates, which ``event_id`` removes.
        """
        count = len(triage.accepted) + len(triage.rejected)
        if count == 0:
            return
        if not self.reachable:
            raise Unavailable("broker_unavailable", "Kafka is unreachable")
        if self._pending + count > self.collector.max_pending_events:
            raise Unavailable("buffer_full", "too many events await Kafka's acks")
        self._pending += count
        self.metrics.pending_events.set(self._pending)
        started = time.perf_counter()
        acked: asyncio.Future[None] | None = None
        try:
            async with asyncio.timeout(self.collector.produce_timeout):
                acked = self._batcher.submit(await self._by_partition(triage))
                acked.add_done_callback(lambda _: self._released(count))
                # shielded: giving up on a request must not withdraw records already queued
                await asyncio.shield(acked)
        except (TimeoutError, KafkaError, OSError) as error:
            if acked is None:  # gave up before anything was queued
                self._released(count)
            self._set_reachable(False, f"produce failed ({error!r})")
            raise Unavailable(
                "broker_unavailable", f"Kafka did not acknowledge: {error!r}"
            ) from None
        self.metrics.produce_seconds.observe(time.perf_counter() - started)

    def _released(self, count: int) -> None:
        self._pending -= count
        self.metrics.pending_events.set(self._pending)

    async def _by_partition(self, triage: Triage) -> dict[Partition, list[PendingRecord]]:
        groups: dict[Partition, list[PendingRecord]] = defaultdict(list)
        counts = {
            topic: len(await self._producer.partitions_for(topic))
            for topic in {self.settings.topic(r.topic) for r in triage.accepted}
        }
        for record in triage.accepted:
            topic = self.settings.topic(record.topic)
            groups[(topic, partition_of(record.key, counts[topic]))].append(
                (record.key, record.value, [])
            )
        if triage.rejected:
            dead_letters = self.settings.topic(DEAD_LETTER)
            partitions = sorted(await self._producer.partitions_for(dead_letters))
            for rejection in triage.rejected:
                groups[(dead_letters, random.choice(partitions))].append(
                    self._dead_letter(rejection)
                )
        return groups

    def _dead_letter(self, rejection: Rejection) -> PendingRecord:
        """The rejected item whole, up to the body limit; cut there, with its full size in
        ``cx.error.truncated``. Re-serialising can make an item larger than it arrived (``1e5``
        becomes ``100000.0``, 2.25x): a 1 MiB body could make a 2.3 MB dead letter, which a
        broker with Kafka's default 1 MB ``max.message.bytes`` refuses, failing the request
        (503) and marking the broker unreachable for every client."""
        value, headers = rejection.value, dead_letter_headers(rejection)
        limit = self.collector.max_body
        if len(value) > limit:
            headers.append(("cx.error.truncated", str(len(value)).encode()))
            value = value[:limit]
        return (None, value, headers)
