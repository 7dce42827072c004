"""The orders-settled barrier: the time up to which cart decisions may be taken.

Orders and carts are different partitions, processed at different speeds (a backfill queues
thousands of orders behind a cart). A cart may only be judged abandoned once every order that was
in Kafka by then has been processed by the orders stage (its checkpoints reached the view) and
the cart-order links written before those checkpoints have been read by the cart's owner.
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


class OrdersSettlement:
    """Advances :attr:`settled_at`: every order in Kafka before it has reached its cart."""

    def __init__(
        self,
        *,
        view: View,
        owned: Owned,
        offsets: AIOKafkaConsumer,
        orders_topic: str,
        order_partitions: int,
        link_topic: str,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.view, self.owned, self.offsets = view, owned, offsets
        self.order_tps = [TopicPartition(orders_topic, p) for p in range(order_partitions)]
        self.link_topic = link_topic
        self.interval, self.clock = interval, clock
        self.settled_at = float("-inf")

    async def run(self) -> None:
        """Each round: note the time, read the end offsets of ``cx.orders``, wait for the view
        to pass them, then for this worker's link partitions to be read to their ends."""
        while True:
            await asyncio.sleep(self.interval)
            mine = self.owned.carts_partitions()
            if not mine:
                continue
            began = self.clock()
            try:
                order_ends = await self.offsets.end_offsets(self.order_tps)
                await until(partial(self._orders_processed, order_ends))
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

    def _orders_processed(self, ends: dict[TopicPartition, int]) -> bool:
        return all(
            self.view.next_offsets.get((tp.topic, tp.partition), 0) >= end
            for tp, end in ends.items()
        )

    def _links_read(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            owner = self.owned.carts_owner(tp.partition)
            if owner is not None and (owner.link_offset or 0) < end:
                return False
        return True


async def until(predicate: Callable[[], bool], interval: float = 0.05) -> None:
    while not predicate():
        await asyncio.sleep(interval)
