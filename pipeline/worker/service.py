"""The worker: stage 1 (ingest + entity state, partitioned by a consumer group) and stage 2 (the
whole-shop view, replicated), wired to Kafka with aiokafka, plus the /metrics endpoint.

Why not Faust agents on the hot path: Faust costs ~200 µs per record (perf.md: 4.7k events/s vs
330k for a raw aiokafka consumer), its windowed tables are unreliable (research/faust.md §1), and
its exactly-once mode needs Kafka transactions, which Tansu does not implement. Here a batch of
records costs one pass of plain Python per record plus one checkpoint record per partition per
flush, and exactly-once comes from the checkpoint protocol (pipeline/engine/checkpoint.py).

This module only composes the parts and runs them as one task group: ingest
(:mod:`~pipeline.worker.ingest`), delivery (:mod:`~pipeline.worker.delivery`), recovery
(:mod:`~pipeline.worker.recovery`), the orders-settled barrier (:mod:`~pipeline.worker.settle`)
and the view loop (:mod:`~pipeline.worker.view_loop`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.aggregates.windows import window_specs
from pipeline.engine.view import View
from pipeline.http.exposition import HealthMetrics, MetricsServer
from pipeline.kafka.clients import FETCH_MAX_WAIT_MS, bounded_shutdown
from pipeline.kafka.topics import (
    DEAD_LETTER,
    SIGNALS,
    SNAPSHOT_MAX_BYTES,
    checkpoint_topic,
    ensure_topics,
    link_topic,
    repartition_topics,
    snapshot_topic,
    source_topic_names,
)
from pipeline.settings import Settings
from pipeline.worker import gc_policy
from pipeline.worker.delivery import Delivery, Topology
from pipeline.worker.ingest import READ_COMMITTED, Ingest, IngestTopics
from pipeline.worker.ownership import Owned
from pipeline.worker.settle import OrdersSettlement, Settlement
from pipeline.worker.view_loop import ViewLoop

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Worker:
    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.view = View(window_specs(settings.window_seconds), settings.recovery_horizon)
        self.health = HealthMetrics()
        self.processors = Owned(settings.topic("carts"))
        self.view_loop = ViewLoop(settings, self.view, self.health, self.processors, clock)
        self.server = MetricsServer(settings, self.view, self.health, clock, self.is_ready)
        self.delivery: Delivery | None = None
        self.settlements: dict[str, Settlement] = {}
        self._stopping = asyncio.Event()

    @property
    def view_ready(self) -> bool:
        return self.view_loop.ready

    def is_ready(self) -> bool:
        return self.view_loop.ready

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self, started: asyncio.Event | None = None) -> None:
        """Run until :meth:`stop` is called or a component fails."""
        gc_policy.install()
        settings = self.settings
        await ensure_topics(settings)
        producer = AIOKafkaProducer(
            **settings.kafka_client_options(),
            linger_ms=5,
            acks="all",
            max_request_size=SNAPSHOT_MAX_BYTES,
        )
        await producer.start()
        await self.server.start()

        async def partitions(topic: str) -> int:
            return len(await producer.partitions_for(topic))

        checkpoints = checkpoint_topic(settings)
        links = link_topic(settings)
        sources = source_topic_names(settings)
        repartition = repartition_topics(settings)
        source_partitions = {topic: await partitions(topic) for topic in sources}
        topology = Topology(
            dead_letter=settings.topic(DEAD_LETTER),
            dead_letter_partitions=await partitions(settings.topic(DEAD_LETTER)),
            link=links,
            link_partitions=await partitions(links),
            checkpoints=checkpoints,
            checkpoint_partitions=await partitions(checkpoints),
            signals=settings.topic(SIGNALS),
            signals_partitions=await partitions(settings.topic(SIGNALS)),
            repartition=repartition,
        )
        internal_consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(),
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",  # a seek to 0 below the log start lands on the start
        )
        await internal_consumer.start()
        # end offsets as ingest can reach them: an open transaction's orders do not exist yet
        offsets = AIOKafkaConsumer(
            **settings.kafka_client_options(), group_id=None, isolation_level=READ_COMMITTED
        )
        await offsets.start()
        self.delivery = Delivery(producer, topology, self.health)
        interval = settings.flush_interval / 2
        carts = OrdersSettlement(
            view=self.view,
            owned=self.processors,
            offsets=offsets,
            sources=source_partitions,
            orders_topic=settings.topic("orders"),
            carts_topic=settings.topic("carts"),
            repartition=repartition,
            link_topic=links,
            interval=interval,
            clock=self.clock,
        )
        self.settlements = {settings.topic("carts"): carts}
        for short in ("orders", "tickets"):  # their handlers hold events (engine/holdback)
            topic = settings.topic(short)
            self.settlements[topic] = Settlement(
                view=self.view,
                owned=self.processors,
                offsets=offsets,
                topic=topic,
                partitions=source_partitions[topic],
                repartition=repartition[topic],
                interval=interval,
                clock=self.clock,
            )
        self.health.cart_decisions_behind.set_function(carts.decisions_behind)
        ingest = Ingest(
            settings,
            owned=self.processors,
            view=self.view,
            view_loaded=self.view_loop.loaded,
            delivery=self.delivery,
            settlements=self.settlements,
            internal_consumer=internal_consumer,
            topics=IngestTopics(
                sources=sources,
                link=links,
                checkpoints=checkpoints,
                checkpoint_partitions=topology.checkpoint_partitions,
                repartition=repartition,
                partitions=source_partitions,
            ),
            health=self.health,
            clock=self.clock,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    self.view_loop.run(
                        producer,
                        checkpoints,
                        topology.checkpoint_partitions,
                        snapshot_topic(settings),
                    )
                )
                tasks.create_task(ingest.run())
                tasks.create_task(self._watch_stop())
                tasks.create_task(self._probe_broker(internal_consumer))
                for settlement in self.settlements.values():
                    tasks.create_task(settlement.run())
                if started is not None:
                    started.set()
        except* _Stopped:
            pass
        finally:
            await self.server.stop()
            await bounded_shutdown(internal_consumer.stop())
            await bounded_shutdown(offsets.stop())
            await bounded_shutdown(producer.stop())

    def stop(self) -> None:
        self._stopping.set()

    async def _watch_stop(self) -> None:
        await self._stopping.wait()
        raise _Stopped

    async def _probe_broker(self, client: AIOKafkaConsumer, interval: float = 2.0) -> None:
        """Keep ``cx_pipeline_broker_connected`` true to what a metadata request says.

        The request runs as its own task and is abandoned, not awaited, on timeout or stop:
        aiokafka's metadata call can take long to unwind once the broker is gone, and
        ``wait_for`` would hold the worker's shutdown until it does.
        """
        was_connected = None
        while True:
            probe = asyncio.ensure_future(client.topics())
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


class _Stopped(Exception):
    pass
