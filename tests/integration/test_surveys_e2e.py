"""End to end on the real embedded broker: survey events in, exact NPS/CSAT/CES out.

Events go in with a plain aiokafka producer; /metrics must equal tests/oracle.py on the same
events, per window and channel, including empty windows, duplicates, late events and garbage.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import orjson
import pytest

from tests.integration.harness import (
    Pipeline,
    consume_all,
    cx_samples,
    produce,
    produce_events,
    wait_for,
)
from tests.integration.stories import cart_story, order_story, rfc3339, survey, ticket_story
from tests.oracle import SURVEY_METRICS, WINDOWS, survey_expectations

pytestmark = pytest.mark.integration


def mixed_surveys(now: float) -> list[dict]:
    """Responses spread over channels and ages, none near a window edge."""
    ages = [30, 100, 150, 600, 1500, 2900, 3 * 3600, 10 * 3600, 20 * 3600]
    events = []
    for i, age in enumerate(ages):
        for j, (kind, score) in enumerate(
            [
                ("nps", 10),
                ("nps", 9),
                ("nps", 7),
                ("nps", 3),
                ("nps", 0),
                ("csat", 5),
                ("csat", 4),
                ("csat", 2),
                ("ces", 1),
                ("ces", 6),
                ("ces", 3),
            ]
        ):
            channel = ["web", "mobile_app", "chat", None][(i + j) % 4]  # None: defaults to web
            if (i + j) % 7 == 0:
                continue  # uneven mixes per window
            events.append(survey(now - age - j, score, channel, kind))
    # a channel with a single old response: its 5m and 1h windows must stay empty
    events.append(survey(now - 5 * 3600, 10, "store"))
    return events


def assert_matches(samples: dict, expected: dict) -> None:
    actual = cx_samples(samples, SURVEY_METRICS)
    assert set(actual) == set(expected), (
        f"missing {sorted(set(expected) - set(actual))[:5]} unexpected {sorted(set(actual) - set(expected))[:5]}"
    )
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def matches_oracle(worker, events: list[dict]) -> bool:
    expected = survey_expectations(events, time.time(), WINDOWS)
    try:
        assert_matches(worker.samples(), expected)
    except AssertionError:
        return False
    return True


def test_survey_metrics_equal_independent_calculation(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        events = mixed_surveys(now)
        late = [survey(now - 25 * 3600, 0, "web") for _ in range(3)]
        future = [survey(now + 20, 10, "social")]  # counted once its time has come
        duplicates = [dict(e) for e in events[:10]] + [{**events[10], "score": 0}]
        produce_events(broker.bootstrap, pipeline.prefix, events + late + future + duplicates)

        everything = events + late + future
        wait_for(
            lambda: matches_oracle(worker, everything), 60, "survey metrics to equal the oracle"
        )
        assert_matches(worker.samples(), survey_expectations(everything, time.time(), WINDOWS))

        samples = worker.samples()
        topic = pipeline.prefix + "surveys"
        assert samples[
            (
                "cx_events_total",
                frozenset({"topic": topic, "event_type": "survey.submitted"}.items()),
            )
        ] == len(everything)
        assert samples[("cx_events_duplicate_total", frozenset({"topic": topic}.items()))] == len(
            duplicates
        )
        assert samples[("cx_events_late_total", frozenset({"topic": topic}.items()))] == len(late)
        # the store channel has one 5-hour-old response: no value at all for 5m and 1h
        for window in ("5m", "1h"):
            assert (
                "cx_nps_score",
                frozenset({"window": window, "channel": "store"}.items()),
            ) not in samples
        assert (
            samples[("cx_nps_score", frozenset({"window": "24h", "channel": "store"}.items()))]
            == 100.0
        )
    finally:
        pipeline.stop()


def bad_records(now: float) -> list[tuple[str, bytes | None, bytes]]:
    """(expected reason, key, value) for every kind of bad input the contract names."""

    def encoded(event: dict) -> bytes:
        return orjson.dumps(event)

    good = survey(now - 60, 9)
    key = good["response_id"].encode()

    def variant(**changes) -> tuple[bytes, bytes]:
        event = {**good, "event_id": uuid.uuid4().hex, **changes}
        return event["response_id"].encode(), encoded(
            {k: v for k, v in event.items() if v is not None}
        )

    deep = b"[" * 70 + b"]" * 70
    nested = encoded({**good, "event_id": "deep", "extra": None})[:-1] + b',"x":' + deep + b"}"
    return [
        ("invalid_json", key, b'{"event_id": "x", '),
        ("invalid_encoding", key, b'{"event_id": "\xff\xfe"}'),
        ("not_an_object", key, b"[1, 2, 3]"),
        ("invalid_json", key, b'{"score": NaN}'),
        ("too_large", key, b"{" + b" " * 300_000 + b"}"),
        ("too_deep", key, nested),
        ("missing_field", *variant(score=None)),
        ("invalid_field", *variant(score=11)),
        ("invalid_field", *variant(score="9")),
        ("invalid_field", *variant(channel="fax")),
        ("unknown_event_type", *variant(event_type="survey.deleted")),
        ("unsupported_schema_version", *variant(schema_version=2)),
        ("invalid_timestamp", *variant(occurred_at="2026-11-23T10:00:00")),
        ("future_timestamp", *variant(occurred_at=rfc3339(now + 3600))),
        ("wrong_topic", *variant(event_type="ticket.resolved", ticket_id="T1")),
        ("missing_key", None, variant()[1]),
        ("key_mismatch", b"someone-else", variant()[1]),
    ]


def test_bad_input_is_dead_lettered_unchanged_and_counted(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        topic = pipeline.prefix + "surveys"
        bad = bad_records(now)
        produce(broker.bootstrap, [(topic, key, value) for _, key, value in bad])
        after = [survey(now - 10, 5, "email", "csat")]
        produce_events(broker.bootstrap, pipeline.prefix, after)

        # the worker keeps going: the good event after the garbage is counted
        wait_for(
            lambda: (
                worker.samples().get(
                    ("cx_csat_ratio", frozenset({"window": "5m", "channel": "email"}.items()))
                )
                == 1.0
            ),
            60,
            "the valid event after the bad ones",
        )
        dead = consume_all(broker.bootstrap, pipeline.prefix + "dead-letter", len(bad))
        assert len(dead) == len(bad)
        by_value = {record.value: record for record in dead}
        for reason, key, value in bad:
            record = by_value[value]  # value unchanged, byte for byte
            headers = dict(record.headers)
            assert headers["cx.error.reason"].decode() == reason, (reason, headers)
            assert headers["cx.error.topic"].decode() == topic
            assert int(headers["cx.error.partition"]) >= 0
            assert int(headers["cx.error.offset"]) >= 0
            assert record.key == key

        samples = worker.samples()
        expected_by_reason: dict[str, int] = {}
        for reason, _, _ in bad:
            expected_by_reason[reason] = expected_by_reason.get(reason, 0) + 1
        for reason, count in expected_by_reason.items():
            label = frozenset({"topic": topic, "reason": reason}.items())
            assert samples[("cx_events_rejected_total", label)] == count, reason
    finally:
        pipeline.stop()


def test_exposition_passes_promtool(broker, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (./cx test installs Debian's prometheus package)")
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        orders_first, carts = cart_story(now)
        every_family = (
            mixed_surveys(now) + ticket_story(now) + order_story(now) + orders_first + carts
        )
        produce_events(broker.bootstrap, pipeline.prefix, every_family)
        families = (
            "cx_nps_score{",
            "cx_ttr_seconds{",
            "cx_carts{",
            "cx_ticket_resolution_seconds_bucket{",
            "cx_delivery_on_time_ratio{",
            "cx_checkout_abandoned{",
        )
        wait_for(
            lambda: all(f in worker.metrics_text() for f in families), 60, "every metric family"
        )
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=worker.metrics_text().encode(),
            capture_output=True,
        )
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
        assert checked.stdout.decode().strip() == "" and checked.stderr.decode().strip() == ""
    finally:
        pipeline.stop()


def test_sigkill_and_restart_ends_with_uninterrupted_numbers(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        first = mixed_surveys(now)
        produce_events(broker.bootstrap, pipeline.prefix, first)
        wait_for(lambda: matches_oracle(worker, first), 60, "first half counted")
        worker.kill()
        second = mixed_surveys(now)
        produce_events(
            broker.bootstrap, pipeline.prefix, second + first[:20]
        )  # plus redelivered dups
        restarted = pipeline.start_worker(tmp_path)
        everything = first + second
        wait_for(lambda: matches_oracle(restarted, everything), 60, "numbers after restart")
        samples = restarted.samples()
        topic = pipeline.prefix + "surveys"
        assert samples[
            (
                "cx_events_total",
                frozenset({"topic": topic, "event_type": "survey.submitted"}.items()),
            )
        ] == len(everything)
        assert samples[("cx_events_duplicate_total", frozenset({"topic": topic}.items()))] == 20
    finally:
        pipeline.stop()
