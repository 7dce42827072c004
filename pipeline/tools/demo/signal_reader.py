"""The demo's own reader of ``cx.signals``: every partition from its end at start, no group.

The demo shows the signals its worker decides while it runs, so it starts at the end of the
topic (positions resolved before the simulator starts: nothing of the run is missed) and commits
nothing. The Faust act app is not needed for this.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.kafka.clients import bounded_shutdown
from pipeline.kafka.topics import SIGNALS
from pipeline.settings import Settings
from pipeline.tools.demo.signals import SignalTally


class SignalReader:
    """Feeds every signal record into ``tally`` until cancelled; ``async with`` starts it."""

    def __init__(self, settings: Settings, tally: SignalTally) -> None:
        self.topic = settings.topic(SIGNALS)
        self.tally = tally
        self._consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def __aenter__(self) -> SignalReader:
        """Assign every partition of the topic (the worker created it) and fix the positions."""
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self._consumer.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await bounded_shutdown(self._consumer.stop())
            raise RuntimeError(f"topic {self.topic} does not exist: the worker creates it")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        for partition in assigned:
            await self._consumer.position(partition)  # the end, now
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await bounded_shutdown(self._consumer.stop())

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    self.tally.add(record.value)
