"""The source partitions a worker owns right now, each with its stage-1 processor."""

from __future__ import annotations

from aiokafka import TopicPartition

from pipeline.engine.partition import PartitionProcessor


class Owned(dict[TopicPartition, PartitionProcessor]):
    """Source partition -> processor; shared by ingest, the orders barrier and the view loop.

    Only the ingest side (its loop and the rebalance callbacks, under one lock) adds or removes
    entries; the others read.
    """

    def __init__(self, carts_topic: str) -> None:
        super().__init__()
        self.carts_topic = carts_topic

    def carts_owner(self, partition: int) -> PartitionProcessor | None:
        """The processor of ``cx.carts[partition]``, if this worker owns it."""
        return self.owner(self.carts_topic, partition)

    def carts_partitions(self) -> list[int]:
        """The cx.carts partitions this worker owns."""
        return self.partitions_of(self.carts_topic)

    def owner(self, topic: str, partition: int) -> PartitionProcessor | None:
        return self.get(TopicPartition(topic, partition))

    def partitions_of(self, topic: str) -> list[int]:
        """The partitions of ``topic`` this worker owns."""
        return [tp.partition for tp in self if tp.topic == topic]
