"""Stage 1 wiring: the consumer-group loop that feeds each owned partition's processor, flushes
checkpoints through :mod:`pipeline.worker.delivery`, and hands partitions over on rebalances.

Besides its source partitions, a worker reads the internal partitions that belong to them: the
cart-orders links of its carts partitions and the repartition partition of every source partition
(misplaced records forwarded by other partitions, see :mod:`pipeline.engine.placement`).

Everything that touches the processors runs under one lock: the loop's batches, flushes and the
rebalance callbacks, so a partition never changes hands halfway through a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CorruptRecordException, KafkaError, UnsupportedCodecError

from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.placement import Placement
from pipeline.engine.view import View
from pipeline.http.exposition import HealthMetrics
from pipeline.kafka.clients import FETCH_MAX_WAIT_MS, bounded_shutdown
from pipeline.settings import Settings
from pipeline.worker.delivery import Delivery
from pipeline.worker.handlers import make_handler
from pipeline.worker.ownership import Owned
from pipeline.worker.recovery import recover
from pipeline.worker.settle import Settlement

log = logging.getLogger(__name__)

READ_COMMITTED = "read_committed"
"""Source topics may come from transactional producers (Kafka Streams, exactly-once services): an
aborted transaction's events are not events, and an open one's are not events yet. Records of
plain producers are unaffected."""

UNPARSEABLE = (UnicodeDecodeError, UnsupportedCodecError, CorruptRecordException)
"""What aiokafka raises for a batch it cannot turn into records: a header key that is not UTF-8,
a compression codec it has no library for (the codecs come with cramjam, a dependency), a CRC that
does not match. Each fails every fetch of its batch until the worker steps over it."""

CAUGHT_UP_FLUSH_SHARE = 0.2
"""A worker that has read everything there is flushes after this share of ``flush_interval``.

Under a backlog a flush waits the whole interval: fewer, bigger checkpoints cost less CPU per
event. Caught up, checkpoint cadence is most of an event's way to /metrics. Measured with
``python -m bench --cost-point --latency-rate 16000`` on a quiet machine, the full interval
against this: p50/p99 607/951 vs 428/712 ms after 300k events, 572/1060 vs 439/832 ms after 1M;
drain speed unchanged (32.5k vs 34.1k, 28.5k vs 31.0k events/s)."""


@dataclass
class IngestTopics:
    sources: dict[str, str]
    """Full source topic name -> short name."""
    link: str
    checkpoints: str
    checkpoint_partitions: int
    repartition: dict[str, str]
    """Full source topic name -> its repartition topic."""
    partitions: dict[str, int]
    """Full source topic name -> partition count (decides each key's canonical partition)."""

    def source_of_repartition(self) -> dict[str, str]:
        return {mirror: source for source, mirror in self.repartition.items()}


class Ingest:
    def __init__(
        self,
        settings: Settings,
        *,
        owned: Owned,
        view: View,
        view_loaded: asyncio.Event,
        delivery: Delivery,
        settlements: dict[str, Settlement],
        internal_consumer: AIOKafkaConsumer,
        topics: IngestTopics,
        health: HealthMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.owned = owned
        self.view = view
        self.view_loaded = view_loaded
        self.delivery = delivery
        self.settlements = settlements
        """Source topic -> the barrier its timers and held events wait for (pipeline/worker/settle)."""
        self.internal_consumer = internal_consumer
        """Reads cart-orders links and repartition topics, for exactly the owned partitions."""
        self.topics = topics
        self._repartition_sources = topics.source_of_repartition()
        self._placements = {topic: Placement(n) for topic, n in topics.partitions.items()}
        """One per topic, shared by its processors (one key cache instead of one per partition)."""
        self.health = health
        self.clock = clock
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        settings = self.settings
        consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(),
            group_id=settings.app_id,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=READ_COMMITTED,
            session_timeout_ms=int(settings.session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(settings.session_timeout * 1000 / 3)),
            max_poll_records=settings.max_batch,
        )
        self.consumer = consumer
        self.delivery.commit = consumer.commit
        await consumer.start()
        consumer.subscribe(list(self.topics.sources), listener=_Rebalance(self))
        last_flush = self.clock()
        interval = settings.flush_interval
        try:
            while True:
                try:
                    # wait no longer than the next flush is due: a flush late by a fetch
                    # wait (~0.1 s) was a late checkpoint, i.e. latency for every event in it
                    due_in = last_flush + interval - self.clock()
                    batch = await consumer.getmany(
                        timeout_ms=max(0, int(due_in * 1000)),
                        max_records=settings.max_batch,
                    )
                except UNPARSEABLE:
                    batch = await self._step_over_unreadable(consumer)
                internal = {}
                if self.internal_consumer.assignment():
                    internal = await self.internal_consumer.getmany(
                        timeout_ms=0, max_records=settings.max_batch
                    )
                async with self.lock:
                    now = self.clock()
                    if self._process(internal, batch, now) and self._caught_up(consumer):
                        interval = settings.flush_interval * CAUGHT_UP_FLUSH_SHARE
                    if now - last_flush >= interval:
                        await self._skip_markers(consumer)
                        await self.flush(list(self.owned), now)
                        last_flush = now
                        interval = settings.flush_interval
                        self._update_lag(consumer)
        finally:
            # a last flush and a clean leave, unless the broker is gone: then shut down anyway
            await bounded_shutdown(self._final_flush())
            await bounded_shutdown(consumer.stop())

    def _process(
        self,
        internal: dict[TopicPartition, list[Any]],
        batch: dict[TopicPartition, list[Any]],
        now: float,
    ) -> int:
        """Hand every record to its processor; returns how many there were."""
        count = 0
        for internal_tp, records in internal.items():
            count += len(records)
            source = self._repartition_sources.get(internal_tp.topic)
            if source is None:  # the cart-orders link topic
                owner = self.owned.carts_owner(internal_tp.partition)
                if owner is None:
                    continue
                for record in records:
                    owner.process_link(record.offset, record.key, record.value, now)
                continue
            owner = self.owned.get(TopicPartition(source, internal_tp.partition))
            if owner is None:
                continue  # revoked while the batch was in flight
            for record in records:
                owner.process_forwarded(
                    record.offset, record.key, record.value, record.headers, now
                )
        for tp, records in batch.items():
            count += len(records)
            processor = self.owned.get(tp)
            if processor is None:
                continue  # revoked while the batch was in flight
            for record in records:
                processor.process(record.offset, record.key, record.value, record.headers, now)
        return count

    def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        """Every owned source partition processed up to the end its last fetch saw (the last
        stable offset: an open transaction's records cannot be read yet)."""
        for tp, processor in self.owned.items():
            end = _readable_end(consumer, tp)
            if end is None or processor.position < end:
                return False
        return True

    async def _step_over_unreadable(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[Any]]:
        """Find and skip records aiokafka cannot parse, instead of failing on them forever.

        An unparseable batch (see `UNPARSEABLE`) makes every fetch of it raise, and the raise also
        drops records already taken from other partitions in that call. So: rewind every
        partition to what its processor has processed, then read each alone; the one that raises
        is read record by record up to the culprits, which are dead-lettered (reason only: their
        bytes never reach us) and stepped over. Returns the records read meanwhile, to process as
        usual.
        """
        async with self.lock:
            for tp, processor in self.owned.items():
                consumer.seek(tp, processor.position)
            batch: dict[TopicPartition, list[Any]] = {}
            for tp, processor in list(self.owned.items()):
                try:
                    batch.update(await consumer.getmany(tp, timeout_ms=FETCH_MAX_WAIT_MS))
                    continue
                except UNPARSEABLE:
                    consumer.seek(tp, processor.position)
                await self._read_up_to_unreadable(consumer, tp, processor)
            return batch

    async def _read_up_to_unreadable(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, processor: PartitionProcessor
    ) -> None:
        """Read ``tp`` one record at a time up to and past its unparseable records.

        A whole batch fails at once (a codec, a CRC), so every record of it is stepped over in
        turn; the first readable record after them hands the partition back to batch reading.
        """
        stepped_over = False
        while True:
            try:
                step = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            except UNPARSEABLE as error:
                offset = processor.position
                why = error.reason if isinstance(error, UnicodeDecodeError) else str(error)
                processor.reject_unreadable(offset, f"the Kafka client cannot parse it: {why}")
                log.warning(
                    "stepped over unreadable record %s:%d@%d", tp.topic, tp.partition, offset
                )
                consumer.seek(tp, processor.position)
                stepped_over = True
                continue
            if not step:
                return
            for record in step.get(tp, []):
                processor.process(
                    record.offset, record.key, record.value, record.headers, self.clock()
                )
            if stepped_over:
                return

    async def _skip_markers(self, consumer: AIOKafkaConsumer) -> None:
        """Move processors past offsets the consumer passed without a record.

        Transactional producers leave commit markers (and aborted batches) in source topics.
        Without this a partition's checkpoints would stop short of its end offset forever, and
        cart decisions, which wait for the orders stage to reach the end (see
        :mod:`pipeline.worker.settle`), with them.
        """
        for tp, processor in self.owned.items():
            end = _readable_end(consumer, tp)
            if end is None or processor.position >= end:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), 0.1)
            except (KafkaError, TimeoutError):
                continue  # no valid position right now (being reset or revoked): next time
            processor.position = max(processor.position, position)

    async def flush(self, tps: list[TopicPartition], now: float) -> None:
        """Cut one checkpoint per partition that progressed, then deliver the outbox.

        Nothing new is cut while an earlier outbox is undelivered (a broker outage): records
        keep accumulating in the processors and their next checkpoint covers them, so each
        partition has at most one checkpoint in flight and their order cannot change.
        """
        delivery = self.delivery
        if delivery.outbox and not await delivery.deliver():
            return
        for tp in tps:
            processor = self.owned[tp]
            settlement = self.settlements.get(tp.topic)
            processor.tick(now, None if settlement is None else settlement.settled_at)
            delivery.cut(tp, processor, now)
            await asyncio.sleep(0)  # a tick may decide many carts: let fetches and scrapes in
        await delivery.deliver()

    async def _final_flush(self) -> None:
        async with self.lock:
            await self.flush(list(self.owned), self.clock())

    # -- rebalances ----------------------------------------------------------------------------
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            mine = [tp for tp in revoked if tp in self.owned]
            await self.flush(mine, self.clock())
            await self.delivery.drain()
            for tp in mine:
                del self.owned[tp]
            self._assign_internal()
            self.health.assigned.set(len(self.owned))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            await self.delivery.drain()  # recovery must read our own last checkpoints
            new = [tp for tp in assigned if tp not in self.owned]
            started = time.monotonic()
            await self.view_loaded.wait()
            recovered = await recover(
                self.settings,
                self.view,
                new,
                checkpoint_topic=self.topics.checkpoints,
                checkpoint_partitions=self.topics.checkpoint_partitions,
                new_processor=self._new_processor,
                now=self.clock(),
            )
            recovered_at = time.monotonic()
            assert self.consumer is not None
            for tp, processor in recovered.items():
                self.owned[tp] = processor
                if processor.next_offset is not None:
                    self.consumer.seek(tp, processor.next_offset)
            self._assign_internal()
            self.health.assigned.set(len(self.owned))
            if new:
                log.info(
                    "assigned %d partitions: state recovered in %.2f s, ready in %.2f s",
                    len(new),
                    recovered_at - started,
                    time.monotonic() - started,
                )

    def _assign_internal(self) -> None:
        """Read cart-orders[p] for the cx.carts partitions p this worker owns, and
        repartition-X[p] for every cx.X[p] it owns, each from its processor's checkpoint."""
        starts: dict[TopicPartition, int] = {}
        for tp, processor in self.owned.items():
            repartition = self.topics.repartition[tp.topic]
            starts[TopicPartition(repartition, tp.partition)] = processor.repartition_offset or 0
            if tp.topic == self.owned.carts_topic:
                starts[TopicPartition(self.topics.link, tp.partition)] = processor.link_offset or 0
        self.internal_consumer.assign(sorted(starts))
        for internal_tp, offset in starts.items():
            self.internal_consumer.seek(internal_tp, offset)

    def _new_processor(self, tp: TopicPartition) -> PartitionProcessor:
        short = self.topics.sources[tp.topic]
        return PartitionProcessor(
            topic=short,
            topic_name=tp.topic,
            partition=tp.partition,
            handler=make_handler(short, self.settings),
            settings=self.settings,
            placement=self._placements[tp.topic],
        )

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp, processor in self.owned.items():
            highwater = consumer.highwater(tp)
            if highwater is not None and processor.position:
                lag = max(0, highwater - processor.position)
                self.health.lag.labels(tp.topic, str(tp.partition)).set(lag)


def _readable_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """Where reading ``tp`` can get to, as of its last fetch: the last stable offset (an open
    transaction's records cannot be read yet), else the high watermark; None before a fetch."""
    end = consumer.last_stable_offset(tp)
    return consumer.highwater(tp) if end is None or end < 0 else end


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.ingest.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.ingest.on_assigned(set(assigned))
