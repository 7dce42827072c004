"""Rebuild a partition's stage-1 state from its checkpoints when this worker takes it over."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import TopicPartition

from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from pipeline.kafka.clients import read_partitions
from pipeline.kafka.topics import checkpoint_partition
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class Pause:
    """Awaited between steps of long CPU work (recovery): yields to the event loop every
    ``every`` seconds, so heartbeats go out and the group does not evict a recovering worker."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.since = time.monotonic()

    async def __call__(self) -> None:
        if time.monotonic() - self.since >= self.every:
            await asyncio.sleep(0)
            self.since = time.monotonic()


async def recover(
    settings: Settings,
    view: View,
    tps: list[TopicPartition],
    *,
    checkpoint_topic: str,
    checkpoint_partitions: int,
    new_processor: Callable[[TopicPartition], PartitionProcessor],
    now: float,
) -> dict[TopicPartition, PartitionProcessor]:
    """Each partition's processor, rebuilt from its checkpoints in the checkpoint log.

    The view says where to start reading (the last full-state checkpoint and the dedupe
    horizon), so the cost follows the state's size, not the log's length.
    """
    processors = {tp: new_processor(tp) for tp in tps}
    wanted = {f"{tp.topic}:{tp.partition}".encode(): tp for tp in tps}
    found: dict[TopicPartition, list[Checkpoint]] = {tp: [] for tp in tps}
    starts: dict[int, int] = {}
    for tp in tps:
        log_partition = checkpoint_partition(tp.topic, tp.partition, checkpoint_partitions)
        start = view.recovery_start((tp.topic, tp.partition), log_partition, now)
        starts[log_partition] = min(start, starts.get(log_partition, start))
    pause = Pause()
    if tps:
        records = await read_partitions(settings, checkpoint_topic, starts)
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
