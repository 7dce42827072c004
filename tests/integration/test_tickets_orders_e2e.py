"""Tickets and orders end to end: TTR/first-response quantiles, backlog, reopens, histogram,
orders/revenue/AOV per currency, refunds and on-time delivery equal an independent calculation."""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import Pipeline, cx_samples, produce_events, wait_for
from tests.integration.stories import order_story, ticket_story
from tests.oracle import WINDOWS, order_expectations, ticket_expectations

pytestmark = pytest.mark.integration

QUANTILES = ("cx_ttr_seconds", "cx_first_response_seconds")
EXACT = (
    "cx_tickets_resolved",
    "cx_tickets_reopened",
    "cx_tickets_open",
    "cx_ticket_resolution_seconds_bucket",
    "cx_ticket_resolution_seconds_count",
    "cx_orders",
    "cx_revenue",
    "cx_order_value_average",
    "cx_refunds",
    "cx_refunded_amount",
    "cx_delivery_on_time_ratio",
)


def normalized(samples: dict) -> dict:
    """Histogram ``le`` labels compared as numbers ("60" and "60.0" are the same bound)."""
    return {
        (name, frozenset((k, str(float(v)) if k == "le" else v) for k, v in labels)): value
        for (name, labels), value in samples.items()
    }


def matches(worker, events: list[dict]) -> bool:
    now = time.time()
    want = normalized(
        {**ticket_expectations(events, now, WINDOWS), **order_expectations(events, now, WINDOWS)}
    )
    got = normalized(cx_samples(worker.samples(), QUANTILES + EXACT))
    if set(got) != set(want):
        return False
    for key, value in want.items():
        tolerance = 0.02 if key[0] in QUANTILES else 1e-9
        if got[key] != pytest.approx(value, rel=tolerance):
            return False
    return True


def test_ticket_and_order_metrics_equal_independent_calculation(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        events = ticket_story(now) + order_story(now)
        produce_events(broker.bootstrap, pipeline.prefix, events)
        wait_for(
            lambda: matches(worker, events), 60, "ticket and order metrics to equal the oracle"
        )
    finally:
        pipeline.stop()


def test_sigkill_mid_stream_then_restart_from_snapshots_ends_with_the_oracle_numbers(
    broker, tmp_path
):
    """Stateful entities (reopened tickets, shipped orders) survive a crash through full-state
    checkpoints and a view snapshot, and redelivered duplicates count once."""
    pipeline = Pipeline(broker.bootstrap, extra_env={"CX_SNAPSHOT_INTERVAL": "0.5"})
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        events = ticket_story(now) + order_story(now)
        first, second = events[: len(events) // 2], events[len(events) // 2 :]
        produce_events(broker.bootstrap, pipeline.prefix, first)
        wait_for(lambda: events_counted(worker) == len(first), 60, "the first half counted")
        written = worker.log_path.read_text().count("view snapshot written")
        wait_for(
            lambda: worker.log_path.read_text().count("view snapshot written") > written,
            30,
            "a view snapshot taken after the first half",
        )
        worker.kill()

        produce_events(broker.bootstrap, pipeline.prefix, second + first[:10])
        restarted = pipeline.start_worker(tmp_path)
        assert "view restored from a snapshot" in restarted.log_tail(200)
        wait_for(lambda: matches(restarted, events), 60, "the oracle's numbers after the crash")
        duplicates = cx_samples(restarted.samples(), ("cx_events_duplicate_total",))
        assert sum(duplicates.values()) == 10
        assert events_counted(restarted) == len(events)
    finally:
        pipeline.stop()


def events_counted(worker) -> float:
    return sum(cx_samples(worker.samples(), ("cx_events_total",)).values())
