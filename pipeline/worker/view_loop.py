"""Stage 2: tail every checkpoint partition into this worker's whole-shop view, and snapshot it.

A starting view loads the newest view snapshot and reads the checkpoint log only after it; one
worker (the owner of ``cx.carts[0]``) writes a snapshot every ``CX_SNAPSHOT_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.view import View
from pipeline.http.exposition import HealthMetrics
from pipeline.kafka.clients import FETCH_MAX_WAIT_MS, read_partitions
from pipeline.settings import Settings
from pipeline.worker.ownership import Owned

log = logging.getLogger(__name__)


class ViewLoop:
    def __init__(
        self,
        settings: Settings,
        view: View,
        health: HealthMetrics,
        owned: Owned,
        clock: Callable[[], float],
    ) -> None:
        self.settings, self.view, self.health, self.owned, self.clock = (
            settings,
            view,
            health,
            owned,
            clock,
        )
        self.ready = False
        """True once the view has caught up with the checkpoint log: CX metrics export then."""
        self.loaded = asyncio.Event()
        """Set once the view stands on its snapshot (or on nothing): recovery may ask it."""

    async def run(
        self,
        producer: AIOKafkaProducer,
        checkpoint_topic: str,
        checkpoint_partitions: int,
        snapshot_topic: str,
    ) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            enable_auto_commit=False,
            group_id=None,
            # a seek to 0 below the log start (retention trimmed it) lands on the start; aiokafka's
            # default, "latest", jumped to the end and left the view empty but "caught up"
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            await self._load_snapshot(snapshot_topic)
            tps = [TopicPartition(checkpoint_topic, p) for p in range(checkpoint_partitions)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.view.positions.get(tp.partition, 0))
            if not self.view.positions:
                await _warn_if_trimmed(consumer, tps)
            target = await consumer.end_offsets(tps)
            last_expire = 0.0
            last_snapshot = self.clock()
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                self._apply(batch)
                self.health.view_lag.set(view_staleness(consumer, tps, time.time()))
                now = self.clock()
                if not self.ready and not batch:  # see read_partitions: empty fetch = end
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= target[tp] for pos, tp in zip(positions, tps, strict=True)):
                        self.ready = True
                        self.health.view_ready.set(1)
                        log.info("view caught up (%d checkpoints applied)", self.view.applied)
                if now - last_expire > 10:
                    self.view.expire(now)
                    last_expire = now
                snapshot_due = now - last_snapshot >= self.settings.snapshot_interval
                if (
                    self.ready
                    and snapshot_due
                    and await self._write_snapshot(producer, snapshot_topic)
                ):
                    last_snapshot = now
        finally:
            await consumer.stop()

    def _apply(self, batch: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        for tp, records in batch.items():
            for record in records:
                if record.value is None:
                    self.view.positions[tp.partition] = record.offset + 1
                else:
                    checkpoint = Checkpoint.decode(record.value, for_view=True)
                    self.view.apply(checkpoint, (tp.partition, record.offset))

    async def _load_snapshot(self, snapshot_topic: str) -> None:
        """Start the view from the newest snapshot, if there is a usable one."""
        try:
            # each snapshot is produced alone, so -1 is the newest; an older one is the fallback
            records = await read_partitions(self.settings, snapshot_topic, {0: -2})
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
            self.loaded.set()

    async def _write_snapshot(self, producer: AIOKafkaProducer, snapshot_topic: str) -> bool:
        """One worker (the owner of carts partition 0) snapshots the view for faster starts."""
        if self.owned.carts_owner(0) is None:
            return True
        data = self.view.to_snapshot()
        try:
            await (await producer.send(snapshot_topic, value=data, partition=0))
        except KafkaError as error:
            log.warning("view snapshot not written (%s); retrying", type(error).__name__)
            return False
        log.info("view snapshot written: %d checkpoints, %d bytes", self.view.applied, len(data))
        return True


async def _warn_if_trimmed(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
    """A view with no snapshot to stand on reads the checkpoint log from its start: if retention
    has trimmed that start, totals and the open-tickets gauge miss what was trimmed."""
    starts = await consumer.beginning_offsets(tps)
    if any(offset > 0 for offset in starts.values()):
        log.error(
            "the view has no usable snapshot (CX_WINDOWS changed?) and retention has trimmed the"
            " checkpoint log: windows within the retained log are exact, but cx_events_*"
            " counters restart and cx_tickets_open misses tickets opened before it; restore the"
            " previous CX_WINDOWS, or start a new deployment (CX_APP_ID) for new windows"
        )


def view_staleness(consumer: AIOKafkaConsumer, tps: list[TopicPartition], now: float) -> float:
    """Seconds the view's knowledge of the checkpoint log is old: since the least recent fetch
    answer among its partitions (a broker outage makes this grow); 0 until each has answered
    once. Fetch answers arrive every ~0.1 s when all is well."""
    answered = [consumer.last_poll_timestamp(tp) for tp in tps]
    if any(stamp is None for stamp in answered):
        return 0.0
    return max(0.0, now - min(answered) / 1000)  # type: ignore[type-var]
