"""Tickets and orders end to end: TTR/first-response quantiles, backlog, reopens, histogram,
orders/revenue/AOV per currency, refunds and on-time delivery equal an independent calculation."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from tests.integration.harness import Pipeline, cx_samples, produce_events, wait_for
from tests.integration.test_cluster_e2e import envelope, rfc3339
from tests.oracle import order_expectations, ticket_expectations

pytestmark = pytest.mark.integration

WINDOWS = {"5m": 300.0, "1h": 3600.0, "24h": 86400.0}
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


def ticket(kind: str, ticket_id: str, t: float, channel: str = "chat", **fields) -> dict:
    return envelope(kind, t, channel, ticket_id=ticket_id, **fields)


def ticket_story(now: float) -> list[dict]:
    rng = random.Random(7)
    events: list[dict] = []

    def life(
        opened, replied=None, resolved=None, reopened=None, resolved_again=None, channel="chat"
    ):
        tid = uuid.uuid4().hex[:12]
        events.append(ticket("ticket.opened", tid, now - opened, channel, priority="normal"))
        for kind, ago in (
            ("ticket.agent_replied", replied),
            ("ticket.resolved", resolved),
            ("ticket.reopened", reopened),
            ("ticket.resolved", resolved_again),
        ):
            if ago is not None:
                events.append(ticket(kind, tid, now - ago, channel))
        return tid

    life(3 * 3600 + 600, 3 * 3600, 70 * 60)  # TTR 2 h, only in 24h (off the 1h edge)
    life(30 * 60, 29 * 60, 120, channel="email")  # TTR 28 min, inside 5m
    life(2 * 3600, None, 90 * 60, 80 * 60, 40 * 60)  # reopened: one TTR, one reopen, closed
    life(10 * 60, channel="web")  # no reply yet: open, no first response
    life(20 * 3600, 19 * 3600, 18 * 3600, 600, channel="web")  # reopened 10 min ago: open again
    for _ in range(40):  # a spread of resolutions for the quantiles
        opened = rng.uniform(3600, 6 * 3600)
        resolved = rng.uniform(200, 3000)
        life(
            opened,
            rng.uniform(resolved + 60, opened - 30),
            resolved,
            channel=rng.choice(["chat", "email"]),
        )
    return events


def order_story(now: float) -> list[dict]:
    def order_event(kind, order_id, ago, channel="web", **fields):
        return envelope(kind, now - ago, channel, order_id=order_id, **fields)

    events = []
    for i, (total, currency, ago, channel) in enumerate(
        [
            ("19.99", "EUR", 7200, "web"),
            ("0.1", "EUR", 3000, "web"),
            ("0.2", "EUR", 2900, "web"),
            ("100.00", "USD", 1200, "mobile_app"),
            ("5", "EUR", 100, "store"),
            (12.5, "GBP", 200, "web"),
        ]
    ):
        events.append(
            order_event("order.placed", f"o{i}", ago, channel, total=total, currency=currency)
        )
    events.append(
        order_event("order.shipped", "o0", 6600, promised_delivery_at=rfc3339(now - 1800))
    )
    events.append(order_event("order.delivered", "o0", 2400))  # on time
    events.append(
        order_event("order.shipped", "o1", 2800, promised_delivery_at=rfc3339(now - 3600 + 900))
    )
    events.append(order_event("order.delivered", "o1", 600))  # late
    events.append(order_event("order.delivered", "o2", 500))  # no promise known: not judged
    events.append(order_event("order.refunded", "o3", 600, "web", amount="30.50", currency="USD"))
    events.append(order_event("order.refunded", "unknown", 300, "chat", amount=7, currency="EUR"))
    return events


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
