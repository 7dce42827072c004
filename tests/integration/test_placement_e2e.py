"""Issue #11 end to end: exact numbers whatever Kafka client placed the records.

Records are produced with confluent-kafka's DEFAULT partitioner (librdkafka's CRC32
``consistent_random``), and with explicit partitions (round-robin, random) that scatter one
cart's, order's and ticket's events over every partition; the same event ids are produced again
on other partitions. Every worker must export what tests/oracle.py computes, count each event
once, count the repeats as duplicates (and nothing else), and count the misplaced records.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from pipeline.engine.placement import canonical_partition
from tests.integration.harness import (
    Pipeline,
    cx_samples,
    event_records,
    produce_events,
    wait_for,
)
from tests.integration.stories import cart_story, order_story, survey, ticket_story
from tests.integration.test_tickets_orders_e2e import EXACT, QUANTILES, normalized
from tests.oracle import (
    CART_METRICS,
    SURVEY_METRICS,
    WINDOWS,
    cart_expectations,
    first_seen,
    order_expectations,
    survey_expectations,
    ticket_expectations,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
"""The harness's ``CX_SOURCE_PARTITIONS``."""
ENV = {"CX_QUIET_PERIOD": "2"}
KAFKA_CODECS = ("gzip", "snappy", "lz4", "zstd")
"""Every compression codec Kafka's record batches can carry."""
Record = tuple[str, bytes, bytes]
Placed = tuple[str, int, bytes, bytes]


def traffic(now: float) -> list[dict]:
    """Every story: carts with orders, tickets with reopens, orders with deliveries, surveys."""
    orders_first, carts = cart_story(now)
    surveys = [survey(now - 60 * i - 17, i % 11, ["web", "chat"][i % 2]) for i in range(30)]
    return [*orders_first, *carts, *ticket_story(now), *order_story(now), *surveys]


def with_repeats(events: list[dict]) -> list[dict]:
    """The events, then every fifth again (same event id): duplicates wherever they land."""
    return [*events, *events[::5]]


# -- producers ----------------------------------------------------------------------------------
def produce_with_confluent(
    bootstrap: str, records: list[Record], codecs: tuple[str, ...] = ("none",)
) -> list[Placed]:
    """librdkafka with its default partitioner; returns where each record landed.

    With several ``codecs``, record i goes through a producer compressing with codec i mod n,
    so the topics hold batches of each.
    """
    producers = [
        Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": codec,
            }
        )
        for codec in codecs
    ]
    landed: list[Placed] = []
    errors: list[object] = []

    def report(error, message) -> None:
        if error is not None:
            errors.append(error)
        else:
            landed.append((message.topic(), message.partition(), message.key(), message.value()))

    for i, (topic, key, value) in enumerate(records):
        producer = producers[i % len(producers)]
        producer.produce(topic, value=value, key=key, on_delivery=report)
        producer.poll(0)
    remaining = sum(producer.flush(30) for producer in producers)
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors: {errors[:3]}"
    return landed


def produce_placed(bootstrap: str, placed: list[Placed]) -> None:
    """Each record to the partition given (a producer choosing partitions itself)."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value=value, key=key, partition=partition)
                for topic, partition, key, value in placed
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def round_robin(records: list[Record]) -> list[Placed]:
    return [(t, i % PARTITIONS, k, v) for i, (t, k, v) in enumerate(records)]


def at_random(rng: random.Random) -> Callable[[list[Record]], list[Placed]]:
    return lambda records: [(t, rng.randrange(PARTITIONS), k, v) for t, k, v in records]


# -- what every worker must export ---------------------------------------------------------------
def misplaced(placed: list[Placed]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic, partition, key, _ in placed:
        if partition != canonical_partition(key, PARTITIONS):
            counts[topic] = counts.get(topic, 0) + 1
    return counts


def expected(events: list[dict], placed: list[Placed]) -> dict:
    now = time.time()
    want = {
        **cart_expectations(events, now, WINDOWS),
        **survey_expectations(events, now, WINDOWS),
        **ticket_expectations(events, now, WINDOWS),
        **order_expectations(events, now, WINDOWS),
    }
    for topic, n in misplaced(placed).items():
        want[("cx_events_misplaced_total", frozenset({"topic": topic}.items()))] = n
    unique = len(first_seen(events))
    want[("events", frozenset())] = unique
    want[("duplicates", frozenset())] = len(events) - unique
    return normalized(want)


def exported(worker) -> dict:
    samples = worker.samples()
    families = (*CART_METRICS, *SURVEY_METRICS, *QUANTILES, *EXACT, "cx_events_misplaced_total")
    got = normalized(cx_samples(samples, families))
    got[("events", frozenset())] = sum(
        v for (name, _), v in samples.items() if name == "cx_events_total"
    )
    got[("duplicates", frozenset())] = sum(
        v for (name, _), v in samples.items() if name == "cx_events_duplicate_total"
    )
    return got


def exports_expected(worker, events: list[dict], placed: list[Placed]) -> bool:
    want, got = expected(events, placed), exported(worker)
    wrong = {
        k: (want.get(k), got.get(k))
        for k in set(want) | set(got)
        if want.get(k) is None
        or got.get(k) is None
        or got[k] != pytest.approx(want[k], rel=0.02 if k[0] in QUANTILES else 1e-9)
    }
    if wrong:
        raise AssertionError(
            f"differences (expected, exported): {sorted(wrong.items(), key=str)[:6]}"
        )
    return True


def all_export_expected(workers, events: list[dict], placed: list[Placed]) -> None:
    for worker in workers:
        wait_for(
            lambda w=worker: exports_expected(w, events, placed),
            90,
            f"the oracle's numbers on {worker.url}",
        )


def owned(worker) -> float:
    return worker.samples().get(("cx_pipeline_assigned_partitions", frozenset()), 0.0)


# -- tests ---------------------------------------------------------------------------------------
def test_confluent_kafka_default_partitioner_gives_the_oracle_numbers(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap, extra_env=ENV)
    try:
        worker = pipeline.start_worker(tmp_path)
        events = with_repeats(traffic(time.time()))
        placed = produce_with_confluent(broker.bootstrap, event_records(pipeline.prefix, events))
        assert sum(misplaced(placed).values()) > len(events) / 2  # CRC32 is not murmur2
        all_export_expected([worker], events, placed)
    finally:
        pipeline.stop()


def test_compressed_batches_of_every_kafka_codec_give_the_oracle_numbers(broker, tmp_path):
    """Producers compress as they are configured (Java's and librdkafka's users often choose
    lz4, zstd or snappy); Kafka hands the batches on as they are, so the worker must read all."""
    pipeline = Pipeline(broker.bootstrap, extra_env=ENV)
    try:
        worker = pipeline.start_worker(tmp_path)
        events = with_repeats(traffic(time.time()))
        records = event_records(pipeline.prefix, events)
        placed = produce_with_confluent(broker.bootstrap, records, KAFKA_CODECS)
        all_export_expected([worker], events, placed)
        assert not cx_samples(worker.samples(), ("cx_events_rejected_total",))
    finally:
        pipeline.stop()


def test_a_transactional_producers_events_count_once_committed(broker, tmp_path):
    """Exactly-once producers (Kafka Streams, transactional services) write events inside
    transactions: while one is open its events are not facts yet, and other topics go on."""
    pipeline = Pipeline(broker.bootstrap, extra_env=ENV)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "shop-1"})
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        surveys = [survey(now - 60 + i, i % 11) for i in range(20)]
        tickets = ticket_story(now)
        producer.init_transactions(30)
        producer.begin_transaction()
        for topic, key, value in event_records(pipeline.prefix, surveys):
            producer.produce(topic, value=value, key=key)
        assert producer.flush(30) == 0  # written to the log, not committed
        produce_events(broker.bootstrap, pipeline.prefix, tickets)

        def counted(topic: str) -> float:
            samples = cx_samples(worker.samples(), ("cx_events_total",))
            return sum(v for (_, labels), v in samples.items() if dict(labels)["topic"] == topic)

        wait_for(
            lambda: counted(pipeline.prefix + "tickets") == len(first_seen(tickets)),
            60,
            "the tickets produced after the open transaction",
        )
        assert counted(pipeline.prefix + "surveys") == 0
        producer.commit_transaction(30)
        wait_for(
            lambda: counted(pipeline.prefix + "surveys") == len(surveys),
            60,
            "the surveys once their transaction committed",
        )
    finally:
        pipeline.stop()


@pytest.mark.parametrize("placement", ["round_robin", "random"])
def test_explicit_partitions_two_workers_give_the_oracle_numbers(broker, tmp_path, placement):
    place = round_robin if placement == "round_robin" else at_random(random.Random(11))
    pipeline = Pipeline(broker.bootstrap, extra_env=ENV)
    try:
        first, second = pipeline.start_worker(tmp_path), pipeline.start_worker(tmp_path)
        wait_for(
            lambda: owned(first) > 0 and owned(second) > 0 and owned(first) + owned(second) == 16,
            60,
            "both workers to own partitions",
        )
        events = with_repeats(traffic(time.time()))
        placed = place(event_records(pipeline.prefix, events))
        produce_placed(broker.bootstrap, placed)
        all_export_expected([first, second], events, placed)
    finally:
        pipeline.stop()


def test_sigkill_while_misplaced_records_are_in_flight(broker, tmp_path):
    """A worker killed between forwarding and checkpointing: its replacement forwards again,
    the owner applies each record once and counts no repeat as a duplicate."""
    pipeline = Pipeline(broker.bootstrap, extra_env=ENV)
    try:
        worker = pipeline.start_worker(tmp_path)
        events = with_repeats(traffic(time.time()))
        placed = round_robin(event_records(pipeline.prefix, events))
        half = len(placed) // 2
        produce_placed(broker.bootstrap, placed[:half])
        wait_for(
            lambda: exported(worker).get(("events", frozenset()), 0) > 0,
            30,
            "the worker to apply some events",
        )
        worker.kill()
        produce_placed(broker.bootstrap, placed[half:])
        replacement = pipeline.start_worker(tmp_path)
        all_export_expected([replacement], events, placed)
    finally:
        pipeline.stop()
