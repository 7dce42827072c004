"""The outbox through a broker outage: a checkpoint retried later carries the state it was cut
with, not the state the partition has reached by the retry."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

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
        self.headers: list[Any] = []

    def append(self, *, key: Any, value: bytes | None, timestamp: Any, headers: Any) -> object:
        self.values.append(value)
        self.headers.append(headers)
        return object()

    def record_count(self) -> int:
        return len(self.values)


class Recording:
    """A producer that records every batch it is handed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self.headers: list[Any] = []

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future:
        self.sent += [(topic, value) for value in batch.values]
        self.headers += batch.headers
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class OutageThenRecording(Recording):
    """A producer whose first send fails as in an outage; later sends are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future:
        if not self.failed:
            self.failed = True
            raise KafkaConnectionError("broker gone")
        return await super().send_batch(batch, topic, partition=partition)


class OneMegabyteDeadLetters(Recording):
    """A broker whose dead-letter topic keeps Kafka's default limit (1 MB per record)."""

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future:
        if topic == "dlq" and any(len(value or b"") > 1_048_576 for value in batch.values):
            raise MessageSizeTooLargeError()
        return await super().send_batch(batch, topic, partition=partition)


TOPOLOGY = Topology(
    dead_letter="dlq",
    dead_letter_partitions=1,
    link="links",
    link_partitions=1,
    checkpoints="checkpoints",
    checkpoint_partitions=1,
    signals="signals",
    signals_partitions=1,
)


def test_a_dead_letter_the_broker_refuses_as_too_large_goes_without_its_record():
    """A 1.5 MB record (too large for the pipeline, not for its source topic) against a
    dead-letter topic created with the broker's default: the flush must go through, not wait
    on it for ever."""
    processor = make_processor("carts", make_handler("carts", SETTINGS))
    producer = OneMegabyteDeadLetters()
    delivery = Delivery(producer, TOPOLOGY, HealthMetrics())  # type: ignore[arg-type]
    huge = b"x" * 1_500_000

    async def scenario() -> None:
        processor.process(0, CART.encode(), huge, [("trace", b"t")], NOW)
        processor.process(1, *_record(NOW - 60, "a"), (), NOW)
        delivery.cut(TopicPartition("cx.carts", 0), processor, NOW)
        assert not await delivery.deliver()  # refused once, cut to its headers
        assert await delivery.deliver()

    asyncio.run(scenario())
    (dead,) = [value for topic, value in producer.sent if topic == "dlq"]
    assert dead is None
    (headers,) = [h for h in producer.headers if dict(h).get("cx.error.reason")]
    assert dict(headers)["cx.error.reason"] == b"too_large"
    assert dict(headers)["cx.error.truncated"] == b"1500000"
    (checkpoint,) = [v for topic, v in producer.sent if topic == "checkpoints"]
    assert Checkpoint.decode(checkpoint).next_offset == 2


def test_a_checkpoint_retried_after_an_outage_holds_the_state_it_was_cut_with():
    processor = make_processor("carts", make_handler("carts", SETTINGS))
    producer = OutageThenRecording()
    topology = TOPOLOGY
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
