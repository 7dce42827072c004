"""Settled barriers: the time up to which a topic's partitions may take order-dependent steps.

Any record may have landed on a partition other than its entity's; it then reaches its owner
later, through the repartition topic (pipeline/engine/placement.py). A partition may therefore
only act on "nothing else came before" once everything that was in Kafka by then has reached it:

* :class:`TopicSettlement` (tickets, orders): every partition of the topic was processed that far
  (its checkpoints reached the view), so the forwards sent before those checkpoints are in Kafka;
  then this worker's repartition partitions were read to their ends. Held events
  (pipeline/engine/holdback.py) are released up to it.
* :class:`OrdersSettlement` (carts): cart decisions wait for orders too. Every ``cx.orders`` and
  ``cx.carts`` partition was processed that far; every ``repartition-orders`` partition was
  applied to its end by its owner (the view shows its checkpoints' repartition offsets), so the
  links of forwarded orders are in Kafka; this worker's ``repartition-carts`` and cart-orders
  link partitions were read to their ends.

Each step's end offsets are read after the previous step was reached.
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


class Settlement:
    """Advances :attr:`settled_at` in rounds while this worker owns a partition of ``topic``."""

    def __init__(
        self,
        *,
        view: View,
        owned: Owned,
        offsets: AIOKafkaConsumer,
        topic: str,
        partitions: int,
        repartition: str,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.view, self.owned, self.offsets = view, owned, offsets
        self.topic, self.repartition = topic, repartition
        self.source_tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.interval, self.clock = interval, clock
        self.settled_at = float("-inf")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            mine = self.owned.partitions_of(self.topic)
            if not mine:
                continue
            began = self.clock()
            try:
                await self.round(mine)
            except KafkaError as error:
                log.debug("%s not settled this round: %s", self.topic, type(error).__name__)
                continue
            self.settled_at = began

    async def round(self, mine: list[int]) -> None:
        ends = await self.offsets.end_offsets(self.source_tps)
        await until(partial(self._processed, ends))
        await self._read_to_end(self.topic, self.repartition, mine, "repartition_offset")

    def decisions_behind(self) -> float:
        """Seconds decisions trail the clock (0 when this worker owns none of the topic)."""
        if not self.owned.partitions_of(self.topic):
            return 0.0
        return max(0.0, min(self.clock() - self.settled_at, 1e9))

    def _processed(self, ends: Ends) -> bool:
        """Every source partition in ``ends`` is covered by checkpoints in the view."""
        return all(
            self.view.next_offsets.get((tp.topic, tp.partition), 0) >= end
            for tp, end in ends.items()
        )

    async def _read_to_end(self, topic: str, internal: str, mine: list[int], field: str) -> None:
        """Wait until the processors of ``topic[p]`` read ``internal[p]`` to its current end."""
        ends = await self.offsets.end_offsets([TopicPartition(internal, p) for p in mine])

        def done() -> bool:
            for tp, end in ends.items():
                owner = self.owned.owner(topic, tp.partition)
                if owner is not None and (getattr(owner, field) or 0) < end:
                    return False
            return True

        await until(done)


class OrdersSettlement(Settlement):
    """The carts barrier: every order and cart event in Kafka before it has reached its cart."""

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
        super().__init__(
            view=view,
            owned=owned,
            offsets=offsets,
            topic=carts_topic,
            partitions=sources[carts_topic],
            repartition=repartition[carts_topic],
            interval=interval,
            clock=clock,
        )
        self.source_tps += [TopicPartition(orders_topic, p) for p in range(sources[orders_topic])]
        self.forwarded_orders = {
            TopicPartition(repartition[orders_topic], p): (orders_topic, p)
            for p in range(sources[orders_topic])
        }
        self.link_topic = link_topic

    async def round(self, mine: list[int]) -> None:
        ends = await self.offsets.end_offsets(self.source_tps)
        await until(partial(self._processed, ends))
        forward_ends = await self.offsets.end_offsets(list(self.forwarded_orders))
        await until(partial(self._forwards_applied, forward_ends))
        await self._read_to_end(self.topic, self.repartition, mine, "repartition_offset")
        await self._read_to_end(self.topic, self.link_topic, mine, "link_offset")

    def _forwards_applied(self, ends: Ends) -> bool:
        return all(
            self.view.repartition_offsets.get(self.forwarded_orders[tp], 0) >= end
            for tp, end in ends.items()
        )


async def until(predicate: Callable[[], bool], interval: float = 0.05) -> None:
    while not predicate():
        await asyncio.sleep(interval)
