"""Replays, hostile input and privacy against a real worker on the real embedded broker."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bench.data import hostile_corpus
from pipeline.engine.partition import UNREADABLE
from schemas import REJECT_REASONS
from tests.integration.harness import (
    Pipeline,
    consume_all,
    cx_samples,
    default_partition,
    event_records,
    produce,
    produce_events,
    wait_for,
)
from tests.integration.stories import cart_story, order_story, survey, ticket_story
from tests.integration.test_placement_e2e import produce_with_confluent
from tests.oracle import CART_METRICS, WINDOWS, cart_expectations

pytestmark = pytest.mark.integration

SECRET = "cust-SECRET-7f3a"  # must never show up in a label, a log line or an error detail


def every_story(now: float) -> list[dict]:
    orders_first, carts = cart_story(now)
    surveys = [
        {**survey(now - 29 * i - 7, i % 11), "customer_id": SECRET, "comment": SECRET}
        for i in range(30)
    ]
    return [*orders_first, *carts, *ticket_story(now), *order_story(now), *surveys]


def cx_metrics(worker) -> dict:
    samples = worker.samples()
    return {
        k: v
        for k, v in samples.items()
        if k[0].startswith("cx_") and not k[0].startswith(("cx_pipeline", "cx_events"))
    }


def test_replaying_every_event_changes_no_metric(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap, extra_env={"CX_QUIET_PERIOD": "0.5"})
    try:
        worker = pipeline.start_worker(tmp_path)
        events = every_story(time.time())
        produce_events(broker.bootstrap, pipeline.prefix, events)
        total = ("cx_events_total",)
        wait_for(
            lambda: sum(cx_samples(worker.samples(), total).values()) == len(events),
            60,
            "first pass counted",
        )
        wait_for(
            lambda: (
                set(cx_samples(worker.samples(), CART_METRICS))
                == set(cart_expectations(events, time.time(), WINDOWS))
            ),
            30,
            "every cart outcome decided",
        )
        before = cx_metrics(worker)
        produce_events(broker.bootstrap, pipeline.prefix, events)  # the whole stream again
        duplicates = ("cx_events_duplicate_total",)
        wait_for(
            lambda: sum(cx_samples(worker.samples(), duplicates).values()) == len(events),
            60,
            "replay seen",
        )
        time.sleep(1.0)  # let cart timers tick over the replay: nothing may change
        after = cx_metrics(worker)
        assert after.keys() == before.keys()
        # windows slide with the clock between the two reads: compare counts exactly
        for key, value in before.items():
            if key[0] in (
                "cx_carts",
                "cx_orders",
                "cx_refunds",
                "cx_tickets_open",
                "cx_tickets_resolved",
            ):
                assert after[key] == value, key
    finally:
        pipeline.stop()


def test_hostile_records_are_dead_lettered_unchanged_counted_and_secret_free(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        topic = pipeline.prefix + "surveys"
        bad = hostile_corpus(random.Random(5), orjson.dumps(survey(now - 10, 9)))
        secret_bad = orjson.dumps(
            {**survey(now, 9), "customer_id": 42, "comment": SECRET, "score": SECRET}
        )
        headers = [("h\x00", b"\xff\xfe"), ("", b""), ("x" * 300, b"y" * 300)]
        produce(broker.bootstrap, [(topic, key, value) for key, value in bad], headers=headers)
        produce(broker.bootstrap, [(topic, b"secret-key", secret_bad)])
        good = [{**survey(now - 5, 10, "social"), "customer_id": SECRET}]
        produce_events(broker.bootstrap, pipeline.prefix, good)  # still processed after the garbage

        social = ("cx_nps_score", frozenset({"window": "5m", "channel": "social"}.items()))
        wait_for(
            lambda: worker.samples().get(social) == 100.0, 60, "the valid event after the garbage"
        )
        dead = consume_all(broker.bootstrap, pipeline.prefix + "dead-letter", len(bad) + 1)
        values = sorted(r.value for r in dead)
        assert values == sorted([v for _, v in bad] + [secret_bad]), "every bad record, unchanged"
        samples = worker.samples()
        rejected = {
            dict(k[1])["reason"]: v
            for k, v in samples.items()
            if k[0] == "cx_events_rejected_total"
        }
        assert sum(rejected.values()) == len(bad) + 1
        assert set(rejected) <= REJECT_REASONS
        for record in dead:
            if record.key:
                assert record.partition == default_partition(record.key), "as a plain producer"
            found = dict(record.headers)
            assert found["cx.error.reason"].decode() in REJECT_REASONS
            assert SECRET.encode() not in found["cx.error.detail"]
        assert SECRET not in worker.metrics_text()
        assert SECRET not in worker.log_path.read_text(errors="replace")
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        pipeline.stop()


def produce_keyless_tombstone(bootstrap: str, topic: str) -> None:
    """A record with neither key nor value (aiokafka's ``send`` refuses one; a batch does not)."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            batch = producer.create_batch()
            batch.append(key=None, value=None, timestamp=None)
            await (await producer.send_batch(batch, topic, partition=0))
        finally:
            await producer.stop()

    asyncio.run(run())


def test_a_record_the_kafka_client_cannot_parse_is_stepped_over_not_fatal(broker, tmp_path):
    """A header key that is not UTF-8 makes aiokafka raise on every fetch of its batch; a record
    with neither key nor value must still reach the dead-letter topic as it is."""
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        before = [survey(now - 30 + i, 9) for i in range(20)]
        after = [survey(now - 10 + i, 10) for i in range(20)]
        produce_events(broker.bootstrap, pipeline.prefix, before)
        poisoned = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.integration.unreadable_record",
                broker.bootstrap,
                pipeline.prefix + "surveys",
                "poison",
            ],
            env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert poisoned.returncode == 0, poisoned.stderr
        produce_keyless_tombstone(broker.bootstrap, pipeline.prefix + "surveys")
        produce_events(broker.bootstrap, pipeline.prefix, after)

        counted = ("cx_events_total",)
        wait_for(
            lambda: sum(cx_samples(worker.samples(), counted).values()) == len(before + after),
            60,
            "every readable event counted around the unreadable one",
        )
        rejected = cx_samples(worker.samples(), ("cx_events_rejected_total",))
        topic = pipeline.prefix + "surveys"
        assert rejected == {
            ("cx_events_rejected_total", frozenset({"topic": topic, "reason": reason}.items())): 1
            for reason in (UNREADABLE, "invalid_json")
        }
        dead = consume_all(broker.bootstrap, pipeline.prefix + "dead-letter", 2)
        reasons = sorted(dict(record.headers)["cx.error.reason"] for record in dead)
        assert reasons == [b"invalid_json", UNREADABLE.encode()]
        assert all(record.key is None and record.value is None for record in dead)
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        pipeline.stop()


def test_a_worker_without_a_codec_steps_over_each_compressed_record(broker, tmp_path):
    """A batch whose compression the Kafka client cannot undo fails every fetch of it, record
    after record: each is dead-lettered by reason and stepped over, and reading goes on. (The
    worker ships with every codec; here an import stub takes them away from its aiokafka.)"""
    stub = tmp_path / "no-codecs" / "cramjam"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("codecs withheld by the test")\n')
    pipeline = Pipeline(broker.bootstrap, extra_env={"PYTHONPATH": str(stub.parent)})
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        before = [survey(now - 40 + i, 9) for i in range(20)]
        compressed = [survey(now - 20 + i / 2, 3) for i in range(30)]
        after = [survey(now - 10 + i, 10) for i in range(20)]
        produce_events(broker.bootstrap, pipeline.prefix, before)
        produce_with_confluent(
            broker.bootstrap, event_records(pipeline.prefix, compressed), ("zstd",)
        )
        produce_events(broker.bootstrap, pipeline.prefix, after)

        topic = pipeline.prefix + "surveys"
        unreadable = (
            "cx_events_rejected_total",
            frozenset({"topic": topic, "reason": UNREADABLE}.items()),
        )
        wait_for(
            lambda: (
                cx_samples(worker.samples(), ("cx_events_rejected_total",)).get(unreadable)
                == len(compressed)
            ),
            60,
            "every compressed record stepped over",
        )
        wait_for(
            lambda: (
                sum(cx_samples(worker.samples(), ("cx_events_total",)).values())
                == len(before + after)
            ),
            60,
            "every readable event counted around them",
        )
        dead = consume_all(broker.bootstrap, pipeline.prefix + "dead-letter", len(compressed))
        assert len(dead) == len(compressed)
        assert {dict(record.headers)["cx.error.reason"] for record in dead} == {UNREADABLE.encode()}
        assert all(b"zstd" in dict(record.headers)["cx.error.detail"] for record in dead)
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        pipeline.stop()
