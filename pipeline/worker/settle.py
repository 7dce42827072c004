"""The orders-settled barrier: the time up to which cart decisions may be taken.

Orders and carts are different partitions, processed at different speeds (a backfill queues
thousands of orders behind a cart), and any record may have landed on a partition other than its
entity's (it is then forwarded, see pipeline/engine/placement.py). A cart may only be judged
abandoned once everything that was in Kafka by then has reached it:

1. every ``cx.orders`` and ``cx.carts`` partition was processed that far (its checkpoints reached
   the view), so the forwards of misplaced records, sent before those checkpoints, are in Kafka;
2. every ``repartition-orders`` partition was applied to its end by its owner (the view shows
   its checkpoints' repartition offsets), so the links of forwarded orders are in Kafka, and this
   worker's ``repartition-carts`` partitions were read to their ends;
3. this worker's cart-orders link partitions were read to their ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.engine.view import View
from pipeline.worker.ownership import Owned

log = logging.getLogger(__name__)

Ends = dict[TopicPartition, int]


class OrdersSettlement:
    """Advances :attr:`settled_at`: every order and cart event in Kafka before it has reached
    its cart."""

    def __init__(
        self,
        *,
        view: View,
        owned: Owned,
        offsets: AIOKafkaConsumer,
        sources: dict[str, int],
        orders_topic: str,
        carts_topic: str,
        repartition: dict[str, str],
        link_topic: str,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        """``sources``: source topic -> partition count; ``repartition``: source topic -> its
        repartition topic."""
        self.view, self.owned, self.offsets = view, owned, offsets
        self.source_tps = [
            TopicPartition(topic, p)
            for topic in (orders_topic, carts_topic)
            for p in range(sources[topic])
        ]
        self.forwarded_orders = {
            TopicPartition(repartition[orders_topic], p): (orders_topic, p)
            for p in range(sources[orders_topic])
        }
        self.carts_topic = carts_topic
        self.carts_repartition = repartition[carts_topic]
        self.link_topic = link_topic
        self.interval, self.clock = interval, clock
        self.settled_at = float("-inf")

    async def run(self) -> None:
        """Each round: note the time, then wait for the three steps of the module docstring,
        each against end offsets read after the previous step was reached."""
        while True:
            await asyncio.sleep(self.interval)
            mine = self.owned.carts_partitions()
            if not mine:
                continue
            began = self.clock()
            try:
                source_ends = await self.offsets.end_offsets(self.source_tps)
                await until(partial(self._sources_processed, source_ends))
                forwarded_carts = [TopicPartition(self.carts_repartition, p) for p in mine]
                forward_ends = await self.offsets.end_offsets(
                    [*self.forwarded_orders, *forwarded_carts]
                )
                await until(partial(self._forwards_applied, forward_ends))
                link_tps = [TopicPartition(self.link_topic, p) for p in mine]
                link_ends = await self.offsets.end_offsets(link_tps)
                await until(partial(self._links_read, link_ends))
            except KafkaError as error:
                log.debug("orders not settled this round: %s", type(error).__name__)
                continue
            self.settled_at = began

    def decisions_behind(self) -> float:
        """Seconds cart decisions trail the clock (0 when this worker owns no carts)."""
        if not self.owned.carts_partitions():
            return 0.0
        return max(0.0, min(self.clock() - self.settled_at, 1e9))

    def _sources_processed(self, ends: Ends) -> bool:
        return all(
            self.view.next_offsets.get((tp.topic, tp.partition), 0) >= end
            for tp, end in ends.items()
        )

    def _forwards_applied(self, ends: Ends) -> bool:
        for tp, end in ends.items():
            source = self.forwarded_orders.get(tp)
            if source is not None:
                reached = self.view.repartition_offsets.get(source, 0)
            else:
                owner = self.owned.carts_owner(tp.partition)
                if owner is None:
                    continue  # no longer ours
                reached = owner.repartition_offset or 0
            if reached < end:
                return False
        return True

    def _links_read(self, ends: Ends) -> bool:
        for tp, end in ends.items():
            owner = self.owned.carts_owner(tp.partition)
            if owner is not None and (owner.link_offset or 0) < end:
                return False
        return True


async def until(predicate: Callable[[], bool], interval: float = 0.05) -> None:
    while not predicate():
        await asyncio.sleep(interval)
