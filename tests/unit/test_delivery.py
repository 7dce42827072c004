"""The outbox through a broker outage: a checkpoint retried later carries the state it was cut
with, not the state the partition has reached by the retry."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from pipeline.engine.checkpoint import Checkpoint
from pipeline.http.exposition import HealthMetrics
from pipeline.worker.delivery import Delivery, Topology
from pipeline.worker.handlers import make_handler
from tests.unit.domain_support import NOW, SETTINGS, make_processor
from tests.unit.test_partition import rfc3339

CART = "cart-1"


class _Batch:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, *, key: Any, value: bytes | None, timestamp: Any, headers: Any) -> object:
        self.values.append(value)
        return object()

    def record_count(self) -> int:
        return len(self.values)


class OutageThenRecording:
    """A producer whose first send fails as in an outage; later sends are recorded."""

    def __init__(self) -> None:
        self.failed = False
        self.sent: list[tuple[str, bytes | None]] = []

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future:
        if not self.failed:
            self.failed = True
            raise KafkaConnectionError("broker gone")
        self.sent += [(topic, value) for value in batch.values]
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_a_checkpoint_retried_after_an_outage_holds_the_state_it_was_cut_with():
    processor = make_processor("carts", make_handler("carts", SETTINGS))
    producer = OutageThenRecording()
    topology = Topology(
        dead_letter="dlq",
        dead_letter_partitions=1,
        link="links",
        link_partitions=1,
        checkpoints="checkpoints",
        checkpoint_partitions=1,
        signals="signals",
        signals_partitions=1,
    )
    delivery = Delivery(producer, topology, HealthMetrics())  # type: ignore[arg-type]
    tp = TopicPartition("cx.carts", 0)

    async def scenario() -> list[Checkpoint]:
        processor.process(0, *_record(NOW - 60, "a"), (), NOW)
        delivery.cut(tp, processor, NOW)
        assert not await delivery.deliver()  # the outage: the checkpoint stays in the outbox
        processor.process(1, *_record(NOW - 30, "b"), (), NOW)  # more of the same cart meanwhile
        assert await delivery.deliver()
        return [Checkpoint.decode(value) for topic, value in producer.sent if value is not None]

    (checkpoint,) = asyncio.run(scenario())
    assert checkpoint.next_offset == 1
    items = checkpoint.entity_state()["carts"][CART][8]
    assert [item[1] for item in items] == ["a"], "state past the checkpoint's offset leaked in"


def _record(t: float, product: str) -> tuple[bytes, bytes]:
    """A ``cart.item_added`` of ``product`` to the one cart, as its producer sends it."""
    return CART.encode(), orjson.dumps(
        {
            "event_id": f"{CART}-{product}",
            "event_type": "cart.item_added",
            "occurred_at": rfc3339(t),
            "schema_version": 1,
            "source": "test",
            "channel": "web",
            "cart_id": CART,
            "product_id": product,
            "quantity": 1,
            "unit_price": "9.99",
            "currency": "EUR",
        }
    )
