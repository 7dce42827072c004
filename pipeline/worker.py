"""The worker: stage 1 (ingest + entity state, partitioned by a consumer group) and stage 2 (the
whole-shop view, replicated), wired to Kafka with aiokafka, plus the /metrics endpoint.

Why not Faust agents on the hot path: Faust costs ~200 µs per record (perf.md: 4.7k events/s vs
330k for a raw aiokafka consumer), its windowed tables are unreliable (research/faust.md §1), and
its exactly-once mode needs Kafka transactions, which Tansu does not implement. Here a batch of
records costs one pass of plain Python per record plus one checkpoint record per partition per
flush, and exactly-once comes from the checkpoint protocol (pipeline/checkpoint.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.carts import CartHandler
from pipeline.checkpoint import Checkpoint
from pipeline.domain import DomainHandler
from pipeline.exposition import HealthMetrics, MetricsServer
from pipeline.links import encode_link, link_partition, link_topic
from pipeline.orders import OrderHandler
from pipeline.partition import PartitionProcessor, Rejection
from pipeline.settings import Settings
from pipeline.surveys import SurveyHandler
from pipeline.tickets import TicketHandler
from pipeline.topics import (
    DEAD_LETTER,
    SNAPSHOT_MAX_BYTES,
    checkpoint_partition,
    checkpoint_topic,
    ensure_topics,
    snapshot_topic,
    source_topic_names,
)
from pipeline.view import View
from pipeline.windows import window_specs

log = logging.getLogger(__name__)

Clock = Callable[[], float]

FETCH_MAX_WAIT_MS = 100
"""Long-poll limit of the pipeline's consumers. Tansu answers a fetch only when this expires,
even once data has arrived (measured: 202 ms median per hop at aiokafka's default 500, 27 ms at
100); Apache Kafka answers as soon as data is there, so a short wait only adds idle polls."""


def make_handler(topic: str, settings: Settings) -> DomainHandler:
    """The domain logic of one source topic, for one partition."""
    if topic == "surveys":
        return SurveyHandler()
    if topic == "carts":
        return CartHandler(
            timeout=settings.abandonment_timeout,
            lateness=settings.allowed_lateness,
            quiet=settings.quiet_period,
        )
    if topic == "orders":
        retention = settings.entity_retention
        return OrderHandler(retention=retention, undelivered_retention=retention)
    if topic == "tickets":
        return TicketHandler(retention=settings.entity_retention)
    raise ValueError(f"no domain logic for topic {topic!r}")


def dead_letter_headers(
    topic: str, partition: int, rejection: Rejection
) -> list[tuple[str, bytes]]:
    """Original headers plus Kafka-Connect-style error headers."""
    return [
        *rejection.headers,
        ("cx.error.reason", rejection.reason.encode()),
        ("cx.error.detail", rejection.detail.encode()),
        ("cx.error.topic", topic.encode()),
        ("cx.error.partition", str(partition).encode()),
        ("cx.error.offset", str(rejection.offset).encode()),
    ]


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


@dataclass
class Worker:
    settings: Settings
    clock: Clock = time.time
    view: View = field(init=False)
    processors: dict[TopicPartition, PartitionProcessor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.view = View(window_specs(self.settings.window_seconds), self.settings.recovery_horizon)
        self.health = HealthMetrics()
        self.view_ready = False
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._topics = source_topic_names(self.settings)
        self._checkpoint_topic = checkpoint_topic(self.settings)
        self._snapshot_topic = snapshot_topic(self.settings)
        self._carts_topic = self.settings.topic("carts")
        self._checkpoint_partitions = self.settings.source_partitions
        self._outbox = _Outbox()
        self.orders_settled_at = float("-inf")
        """Every order in Kafka before this time has reached its cart's owner (see _settle)."""
        self.health.cart_decisions_behind.set_function(self._cart_decisions_behind)
        self._view_loaded = asyncio.Event()
        """Set once the view stands on its snapshot (or on nothing): recovery may ask it."""
        self.server = MetricsServer(
            self.settings, self.view, self.health, self.clock, lambda: self.view_ready
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self, started: asyncio.Event | None = None) -> None:
        """Run until :meth:`stop` is called or a component fails."""
        tune_gc()
        await ensure_topics(self.settings)
        self.producer = AIOKafkaProducer(
            **self.settings.kafka_client_options(),
            linger_ms=5,
            acks="all",
            max_request_size=SNAPSHOT_MAX_BYTES,
        )
        await self.producer.start()
        await self.server.start()
        self._checkpoint_partitions = await self._partition_count(self._checkpoint_topic)
        self._link_topic = link_topic(self.settings)
        self._link_partitions = await self._partition_count(self._link_topic)
        self.link_consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",  # a seek to 0 below the log start lands on the start
        )
        await self.link_consumer.start()
        self._offsets = AIOKafkaConsumer(**self.settings.kafka_client_options(), group_id=None)
        await self._offsets.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._run_view())
                tasks.create_task(self._run_ingest())
                tasks.create_task(self._watch_stop())
                tasks.create_task(self._probe_broker())
                tasks.create_task(self._settle_orders())
                if started is not None:
                    started.set()
        except* _Stopped:
            pass
        finally:
            await self.server.stop()
            await bounded_shutdown(self.link_consumer.stop())
            await bounded_shutdown(self._offsets.stop())
            await bounded_shutdown(self.producer.stop())

    def stop(self) -> None:
        self._stopping.set()

    async def _watch_stop(self) -> None:
        await self._stopping.wait()
        raise _Stopped

    async def _probe_broker(self, interval: float = 2.0) -> None:
        """Keep ``cx_pipeline_broker_connected`` true to what a metadata request says.

        The request runs as its own task and is abandoned, not awaited, on timeout or stop:
        aiokafka's metadata call can take long to unwind once the broker is gone, and
        ``wait_for`` would hold the worker's shutdown until it does.
        """
        was_connected = None
        while True:
            probe = asyncio.ensure_future(self.link_consumer.topics())
            try:
                done, _ = await asyncio.wait({probe}, timeout=interval)
            finally:
                probe.cancel()
            connected = int(bool(done) and not probe.cancelled() and probe.exception() is None)
            if connected != was_connected:
                was_connected = connected
                log.log(
                    logging.INFO if connected else logging.WARNING,
                    "broker %s",
                    "reachable" if connected else "unreachable",
                )
            self.health.broker_connected.set(connected)
            await asyncio.sleep(interval)

    async def _partition_count(self, topic: str) -> int:
        partitions = await self.producer.partitions_for(topic)
        return len(partitions)

    # -- stage 1: ingest ---------------------------------------------------------------------
    async def _run_ingest(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            group_id=self.settings.app_id,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(self.settings.session_timeout * 1000 / 3)),
            max_poll_records=self.settings.max_batch,
        )
        self.consumer = consumer
        await consumer.start()
        consumer.subscribe(list(self._topics), listener=_Rebalance(self))
        last_flush = self.clock()
        try:
            while True:
                try:
                    batch = await consumer.getmany(
                        timeout_ms=int(self.settings.flush_interval * 1000),
                        max_records=self.settings.max_batch,
                    )
                except UnicodeDecodeError:
                    batch = await self._step_over_unreadable(consumer)
                links = {}
                if self.link_consumer.assignment():
                    links = await self.link_consumer.getmany(
                        timeout_ms=0, max_records=self.settings.max_batch
                    )
                async with self._lock:
                    now = self.clock()
                    for link_tp, records in links.items():
                        owner = self._carts_owner(link_tp.partition)
                        if owner is None:
                            continue
                        for record in records:
                            owner.process_link(record.offset, record.key, record.value, now)
                    for tp, records in batch.items():
                        processor = self.processors.get(tp)
                        if processor is None:
                            continue  # revoked while the batch was in flight
                        for record in records:
                            processor.process(
                                record.offset, record.key, record.value, record.headers, now
                            )
                    if now - last_flush >= self.settings.flush_interval:
                        await self._skip_markers(consumer)
                        await self._flush(list(self.processors), now)
                        last_flush = now
                        self._update_lag(consumer)
        finally:
            # a last flush and a clean leave, unless the broker is gone: then shut down anyway
            await bounded_shutdown(self._final_flush())
            await bounded_shutdown(consumer.stop())

    async def _step_over_unreadable(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[Any]]:
        """Find and skip a record aiokafka cannot parse, instead of failing on it forever.

        A header key that is not UTF-8 makes every fetch of its batch raise, and the raise also
        drops records already taken from other partitions in that call. So: rewind every
        partition to what its processor has processed, then read each alone; the one that raises
        is read record by record up to the culprit, which is dead-lettered (reason only: its bytes
        never reach us) and stepped over. Returns the records read meanwhile, to process as usual.
        """
        async with self._lock:
            for tp, processor in self.processors.items():
                consumer.seek(tp, processor.position)
            batch: dict[TopicPartition, list[Any]] = {}
            for tp, processor in list(self.processors.items()):
                try:
                    batch.update(await consumer.getmany(tp, timeout_ms=FETCH_MAX_WAIT_MS))
                    continue
                except UnicodeDecodeError:
                    consumer.seek(tp, processor.position)
                while True:
                    try:
                        step = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                    except UnicodeDecodeError as error:
                        offset = processor.position
                        processor.reject_unreadable(
                            offset, f"the Kafka client cannot parse it: {error.reason}"
                        )
                        log.warning(
                            "stepped over unreadable record %s:%d@%d",
                            tp.topic,
                            tp.partition,
                            offset,
                        )
                        consumer.seek(tp, processor.position)
                        break
                    if not step:
                        break
                    for record in step.get(tp, []):
                        processor.process(
                            record.offset, record.key, record.value, record.headers, self.clock()
                        )
            return batch

    async def _skip_markers(self, consumer: AIOKafkaConsumer) -> None:
        """Move processors past offsets the consumer passed without a record.

        Transactional producers leave commit markers (and aborted batches) in source topics.
        Without this a partition's checkpoints would stop short of its end offset forever, and
        cart decisions, which wait for the orders stage to reach the end (see
        :meth:`_settle_orders`), with them.
        """
        for tp, processor in self.processors.items():
            highwater = consumer.highwater(tp)
            if highwater is None or processor.position >= highwater:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), 0.1)
            except (KafkaError, TimeoutError):
                continue  # no valid position right now (being reset or revoked): next time
            processor.position = max(processor.position, position)

    async def _flush(self, tps: list[TopicPartition], now: float) -> None:
        """Cut one checkpoint per partition that progressed, then deliver the outbox.

        Nothing new is cut while an earlier outbox is undelivered (a broker outage): records
        keep accumulating in the processors and their next checkpoint covers them, so each
        partition has at most one checkpoint in flight and their order cannot change.
        """
        if self._outbox and not await self._deliver():
            return
        checkpoints: list[Checkpoint] = []
        for tp in tps:
            processor = self.processors[tp]
            carts = tp.topic == self._carts_topic
            processor.tick(now, self.orders_settled_at if carts else None)
            for rejection in processor.rejected:
                self._outbox.before.append(
                    _Record(
                        self.settings.topic(DEAD_LETTER),
                        rejection.value,
                        rejection.key,
                        None,
                        dead_letter_headers(tp.topic, tp.partition, rejection),
                    )
                )
            self.health.dead_letters.inc(len(processor.rejected))
            processor.rejected.clear()
            for cart_id, time_, order_id in processor.take_links():
                self._outbox.before.append(
                    _Record(
                        self._link_topic,
                        encode_link(time_, order_id),
                        cart_id.encode(),
                        link_partition(cart_id, self._link_partitions),
                    )
                )
            checkpoint = processor.take_checkpoint(now)
            if checkpoint is not None:
                checkpoints.append(checkpoint)
        self._outbox.checkpoints.extend(checkpoints)
        await self._deliver()

    async def _final_flush(self) -> None:
        async with self._lock:
            await self._flush(list(self.processors), self.clock())

    async def _deliver(self) -> bool:
        """Send the outbox: dead letters and links, then checkpoints, then commit offsets.

        A crash between steps replays from the last checkpoint: dead letters may repeat, metrics
        never do, because the checkpoint is the single record that makes a range count. On a
        send failure everything undelivered stays in the outbox for the next attempt (the
        ledger makes a checkpoint delivered twice count once).
        """
        outbox = self._outbox
        try:
            if outbox.before:
                await self._send_all(outbox.before)
                outbox.before = []
            if outbox.checkpoints:
                await self._send_all(
                    [
                        _Record(
                            self._checkpoint_topic,
                            c.encode(),
                            c.key(),
                            checkpoint_partition(c.topic, c.partition, self._checkpoint_partitions),
                        )
                        for c in outbox.checkpoints
                    ]
                )
        except KafkaError as error:
            self.health.broker_connected.set(0)
            log.warning("delivery failed (%s); retrying with the next flush", type(error).__name__)
            return False
        delivered, outbox.checkpoints = outbox.checkpoints, []
        self.health.checkpoints.inc(len(delivered))
        offsets = {
            TopicPartition(c.topic, c.partition): c.next_offset for c in delivered if c.next_offset
        }
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as error:  # advisory only: checkpoints decide where we resume
                log.warning("offset commit failed (%s); checkpoints stay authoritative", error)
        return True

    async def _send_all(self, records: list[_Record]) -> None:
        futures = [await self._send(r) for r in records]
        await asyncio.gather(*futures)

    async def _send(self, r: _Record) -> asyncio.Future[Any]:
        if r.key is None and r.value is None:
            # a dead letter of a record with neither (a keyless tombstone, or one the client
            # could not parse): producer.send refuses that, a batch of its own does not
            batch = self.producer.create_batch()
            batch.append(key=None, value=None, timestamp=None, headers=r.headers or [])
            return await self.producer.send_batch(batch, r.topic, partition=r.partition or 0)
        return await self.producer.send(
            r.topic, value=r.value, key=r.key, partition=r.partition, headers=r.headers
        )

    async def _drain_outbox(self) -> None:
        """Before partitions change hands, everything cut so far must be in the log."""
        while self._outbox and not await self._deliver():
            await asyncio.sleep(1.0)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            mine = [tp for tp in revoked if tp in self.processors]
            await self._flush(mine, self.clock())
            await self._drain_outbox()
            for tp in mine:
                del self.processors[tp]
            self._assign_links()
            self.health.assigned.set(len(self.processors))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            await self._drain_outbox()  # recovery must read our own last checkpoints
            new = [tp for tp in assigned if tp not in self.processors]
            started = time.monotonic()
            recovered = await self._recover(new)
            recovered_at = time.monotonic()
            for tp, processor in recovered.items():
                self.processors[tp] = processor
                if processor.next_offset is not None:
                    self.consumer.seek(tp, processor.next_offset)
            self._assign_links()
            self.health.assigned.set(len(self.processors))
            if new:
                log.info(
                    "assigned %d partitions: state recovered in %.2f s, ready in %.2f s",
                    len(new),
                    recovered_at - started,
                    time.monotonic() - started,
                )

    async def _recover(self, tps: list[TopicPartition]) -> dict[TopicPartition, PartitionProcessor]:
        """Rebuild each partition's processor from its checkpoints in the checkpoint log."""
        await self._view_loaded.wait()
        now = self.clock()
        processors = {tp: self._new_processor(tp) for tp in tps}
        wanted = {f"{tp.topic}:{tp.partition}".encode(): tp for tp in tps}
        found: dict[TopicPartition, list[Checkpoint]] = {tp: [] for tp in tps}
        starts: dict[int, int] = {}
        for tp in tps:
            log_partition = checkpoint_partition(
                tp.topic, tp.partition, self._checkpoint_partitions
            )
            start = self.view.recovery_start((tp.topic, tp.partition), log_partition, now)
            starts[log_partition] = min(start, starts.get(log_partition, start))
        pause = _Pause()
        if tps:
            records = await read_partitions(self.settings, self._checkpoint_topic, starts)
            log.info("recovery read %d checkpoint records (from offsets %s)", len(records), starts)
            for key, value in records:
                tp = wanted.get(key or b"")
                if tp is not None and value is not None:
                    found[tp].append(Checkpoint.decode(value))
                await pause()
        for tp, checkpoints in found.items():
            for _ in processors[tp].restoring(checkpoints, now):
                await pause()
            log.debug(
                "recovered %s:%d from %d checkpoints: seq %d, resume at %s",
                tp.topic,
                tp.partition,
                len(checkpoints),
                processors[tp].seq,
                processors[tp].next_offset,
            )
        return processors

    def _carts_owner(self, partition: int) -> PartitionProcessor | None:
        return self.processors.get(TopicPartition(self._carts_topic, partition))

    def _carts_partitions(self) -> list[int]:
        """The cx.carts partitions this worker owns."""
        return [tp.partition for tp in self.processors if tp.topic == self._carts_topic]

    def _assign_links(self) -> None:
        """Read cart-orders[p] exactly for the cx.carts partitions p this worker owns."""
        wanted = {TopicPartition(self._link_topic, p) for p in self._carts_partitions()}
        self.link_consumer.assign(sorted(wanted))
        for link_tp in wanted:
            owner = self._carts_owner(link_tp.partition)
            if owner is None:
                continue
            self.link_consumer.seek(link_tp, owner.link_offset or 0)

    def _new_processor(self, tp: TopicPartition) -> PartitionProcessor:
        short = self._topics[tp.topic]
        return PartitionProcessor(
            topic=short,
            topic_name=tp.topic,
            partition=tp.partition,
            handler=make_handler(short, self.settings),
            settings=self.settings,
        )

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp, processor in self.processors.items():
            highwater = consumer.highwater(tp)
            if highwater is not None and processor.position:
                lag = max(0, highwater - processor.position)
                self.health.lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _settle_orders(self) -> None:
        """Advance :attr:`orders_settled_at`, the time cart decisions are taken as of.

        Orders and carts are different partitions, processed at different speeds (a backfill
        queues thousands of orders behind a cart). A cart may only be judged abandoned once
        every order that was in Kafka by then has been processed by the orders stage (its
        checkpoints reached the view) and the cart-order links written before those
        checkpoints have been read here. Each round: note the time, read the end offsets of
        ``cx.orders``, wait for the view to pass them, then for the link topic's.
        """
        orders = self.settings.topic("orders")
        order_tps = [TopicPartition(orders, p) for p in range(await self._partition_count(orders))]
        while True:
            await asyncio.sleep(self.settings.flush_interval / 2)
            mine = self._carts_partitions()
            if not mine:
                continue
            began = self.clock()
            try:
                order_ends = await self._offsets.end_offsets(order_tps)
                await _until(partial(self._orders_processed, order_ends))
                link_tps = [TopicPartition(self._link_topic, p) for p in mine]
                link_ends = await self._offsets.end_offsets(link_tps)
                await _until(partial(self._links_read, link_ends))
            except KafkaError as error:
                log.debug("orders not settled this round: %s", type(error).__name__)
                continue
            self.orders_settled_at = began

    def _cart_decisions_behind(self) -> float:
        if not self._carts_partitions():
            return 0.0
        return max(0.0, min(self.clock() - self.orders_settled_at, 1e9))

    def _orders_processed(self, ends: dict[TopicPartition, int]) -> bool:
        return all(
            self.view.next_offsets.get((tp.topic, tp.partition), 0) >= end
            for tp, end in ends.items()
        )

    def _links_read(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            owner = self._carts_owner(tp.partition)
            if owner is not None and (owner.link_offset or 0) < end:
                return False
        return True

    # -- stage 2: the view ---------------------------------------------------------------------
    async def _run_view(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        try:
            await self._load_view_snapshot()
            tps = [
                TopicPartition(self._checkpoint_topic, p)
                for p in range(self._checkpoint_partitions)
            ]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.view.positions.get(tp.partition, 0))
            target = await consumer.end_offsets(tps)
            last_expire = 0.0
            last_snapshot = self.clock()
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for tp, records in batch.items():
                    for record in records:
                        if record.value is None:
                            self.view.positions[tp.partition] = record.offset + 1
                        else:
                            checkpoint = Checkpoint.decode(record.value, for_view=True)
                            self.view.apply(checkpoint, (tp.partition, record.offset))
                self.health.view_lag.set(view_staleness(consumer, tps, time.time()))
                now = self.clock()
                if not self.view_ready and not batch:  # see read_partitions: empty fetch = end
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= target[tp] for pos, tp in zip(positions, tps, strict=True)):
                        self.view_ready = True
                        self.health.view_ready.set(1)
                        log.info("view caught up (%d checkpoints applied)", self.view.applied)
                if now - last_expire > 10:
                    self.view.expire(now)
                    last_expire = now
                snapshot_due = now - last_snapshot >= self.settings.snapshot_interval
                if self.view_ready and snapshot_due and await self._write_view_snapshot():
                    last_snapshot = now
        finally:
            await consumer.stop()

    async def _load_view_snapshot(self) -> None:
        """Start the view from the newest snapshot, if there is a usable one."""
        try:
            # each snapshot is produced alone, so -1 is the newest; an older one is the fallback
            records = await read_partitions(self.settings, self._snapshot_topic, {0: -2})
            for _, value in reversed(records):
                if value is None:
                    continue
                try:
                    self.view.load_snapshot(value)
                except ValueError as error:
                    log.warning("view snapshot skipped: %s", error)
                    continue
                log.info("view restored from a snapshot of %d checkpoints", self.view.applied)
                return
        finally:
            self._view_loaded.set()

    async def _write_view_snapshot(self) -> bool:
        """One worker (the owner of carts partition 0) snapshots the view for faster starts."""
        if self._carts_owner(0) is None:
            return True
        data = self.view.to_snapshot()
        try:
            await (await self.producer.send(self._snapshot_topic, value=data, partition=0))
        except KafkaError as error:
            log.warning("view snapshot not written (%s); retrying", type(error).__name__)
            return False
        log.info("view snapshot written: %d checkpoints, %d bytes", self.view.applied, len(data))
        return True


def view_staleness(consumer: AIOKafkaConsumer, tps: list[TopicPartition], now: float) -> float:
    """Seconds the view's knowledge of the checkpoint log is old: since the least recent fetch
    answer among its partitions (a broker outage makes this grow); 0 until each has answered
    once. Fetch answers arrive every ~0.1 s when all is well."""
    answered = [consumer.last_poll_timestamp(tp) for tp in tps]
    if any(stamp is None for stamp in answered):
        return 0.0
    return max(0.0, now - min(answered) / 1000)  # type: ignore[type-var]


GC_THRESHOLDS = (100_000, 50, 1000)


def tune_gc() -> None:
    """Make Python's cyclic garbage collector rare.

    A worker holds hundreds of thousands of container objects (carts, tickets, window
    buckets), none in reference cycles (refcounting frees them), yet with the default thresholds
    (700, 10, 10) the collector keeps re-scanning them all: parsing a full checkpoint of 88k carts
    took 2.5 s instead of 0.12 s, and restoring 300k events' state 3.6 s instead of 1.1 s.
    """
    gc.set_threshold(*GC_THRESHOLDS)


class _Pause:
    """Awaited between steps of long CPU work (recovery): yields to the event loop every
    ``every`` seconds, so heartbeats go out and the group does not evict a recovering worker."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.since = time.monotonic()

    async def __call__(self) -> None:
        if time.monotonic() - self.since >= self.every:
            await asyncio.sleep(0)
            self.since = time.monotonic()


async def _until(predicate: Callable[[], bool], interval: float = 0.05) -> None:
    while not predicate():
        await asyncio.sleep(interval)


SHUTDOWN_STEP_TIMEOUT = 3.0
"""Seconds one shutdown step may take; a dead broker must not make a stop hang."""


async def bounded_shutdown(step: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_TIMEOUT)
    except (TimeoutError, KafkaError, OSError) as error:
        log.warning("shutdown step skipped: %s", type(error).__name__)


class _Stopped(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    value: bytes | None
    key: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class _Outbox:
    """What a flush must deliver: dead letters and links first, then checkpoints."""

    before: list[_Record] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.before or self.checkpoints)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.on_assigned(set(assigned))
