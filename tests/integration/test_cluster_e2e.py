"""Two workers, one group, one broker: whole-shop numbers from each, through stops and SIGKILL.

Carts and their orders travel on different topics and partitions (and may arrive in either
order); every worker must still export exactly what tests/oracle.py computes from the events.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.integration.harness import Pipeline, cx_samples, produce_events, wait_for
from tests.oracle import cart_expectations, survey_expectations

pytestmark = pytest.mark.integration

WINDOWS = {"5m": 300.0, "1h": 3600.0, "24h": 86400.0}
CART_METRICS = ("cx_carts", "cx_cart_abandonment_ratio", "cx_checkout_abandoned")
SURVEY_METRICS = (
    "cx_nps_score",
    "cx_nps_responses",
    "cx_csat_ratio",
    "cx_ces_score",
    "cx_survey_responses",
)
ENV = {"CX_QUIET_PERIOD": "0.5"}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def envelope(kind: str, t: float, channel: str = "web", **fields) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "event_type": kind,
        "occurred_at": rfc3339(t),
        "schema_version": 1,
        "source": "test",
        "channel": channel,
        **fields,
    }


def item(cart: str, t: float, channel: str = "web") -> dict:
    return envelope(
        "cart.item_added",
        t,
        channel,
        cart_id=cart,
        product_id="p",
        quantity=1,
        unit_price="5.00",
        currency="EUR",
    )


def order(cart: str | None, t: float, channel: str = "web", total: str = "5.00") -> dict:
    fields = {"order_id": uuid.uuid4().hex, "total": total, "currency": "EUR"}
    if cart:
        fields["cart_id"] = cart
    return envelope("order.placed", t, channel, **fields)


def survey(t: float, score: int, channel: str = "web") -> dict:
    return envelope(
        "survey.submitted", t, channel, response_id=uuid.uuid4().hex, survey="nps", score=score
    )


def cart_story(now: float) -> tuple[list[dict], list[dict]]:
    """(orders that arrive FIRST, cart events that arrive after) covering every cart outcome."""
    c = {
        name: f"{name}-{uuid.uuid4().hex[:8]}"
        for name in (
            "conv",
            "aband",
            "recov",
            "early",
            "recent",
            "fresh",
            "none",
            "ship",
            "pay",
            "review",
        )
    }
    orders_first = [
        order(c["early"], now - 45 * 60, "mobile_app"),  # before its cart's events arrive
        order(c["conv"], now - 3 * 3600 + 1790),  # 10 s before the timeout
        order(c["recov"], now - 4 * 3600 + 3600),  # after the abandonment: a recovery
        order(c["recent"], now - 120),
        order(None, now - 100),  # an order with no cart
    ]
    carts = [
        item(c["conv"], now - 3 * 3600),
        item(c["aband"], now - 2 * 3600, "chat"),
        envelope("checkout.started", now - 2 * 3600 + 10, "chat", cart_id=c["aband"]),
        envelope(
            "checkout.step_completed",
            now - 2 * 3600 + 20,
            "chat",
            cart_id=c["aband"],
            step="shipping",
        ),
        item(c["recov"], now - 4 * 3600),
        item(c["early"], now - 50 * 60, "mobile_app"),
        item(c["recent"], now - 180),
        item(c["fresh"], now - 60),  # still open: no outcome yet
    ]
    for name, steps in (
        ("none", []),
        ("ship", ["shipping"]),
        ("pay", ["shipping", "payment"]),
        ("review", ["shipping", "payment", "review"]),
    ):
        start = now - 90 * 60
        carts += [item(c[name], start), envelope("checkout.started", start + 5, cart_id=c[name])]
        carts += [
            envelope("checkout.step_completed", start + 10 + i, cart_id=c[name], step=s)
            for i, s in enumerate(steps)
        ]
    return orders_first, carts


def expected(events: list[dict]) -> dict:
    now = time.time()
    return {**cart_expectations(events, now, WINDOWS), **survey_expectations(events, now, WINDOWS)}


def exports_expected(worker, events: list[dict]) -> bool:
    want = expected(events)
    got = cx_samples(worker.samples(), CART_METRICS + SURVEY_METRICS)
    return set(got) == set(want) and all(got[k] == pytest.approx(v) for k, v in want.items())


def test_two_workers_export_whole_shop_numbers_through_stop_and_kill(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap, extra_env=ENV)
    try:
        first, second = pipeline.start_worker(tmp_path), pipeline.start_worker(tmp_path)
        now = time.time()
        orders_first, carts = cart_story(now)
        surveys = [survey(now - 60 * i, i % 11, ["web", "chat"][i % 2]) for i in range(40)]
        produce_events(broker.bootstrap, pipeline.prefix, orders_first + surveys[:20])
        produce_events(broker.bootstrap, pipeline.prefix, carts + surveys[20:])
        events = orders_first + carts + surveys

        for worker in (first, second):
            wait_for(
                lambda w=worker: exports_expected(w, events),
                60,
                f"whole-shop numbers on {worker.url}",
            )
        assigned = [
            w.samples()[("cx_pipeline_assigned_partitions", frozenset())] for w in (first, second)
        ]
        assert all(a > 0 for a in assigned), f"both workers must own partitions: {assigned}"

        second.stop()  # a clean leave mid-run: the first takes over
        more = [survey(time.time() - 30, 10, "email") for _ in range(5)]
        late_cart = item(f"late-{uuid.uuid4().hex[:6]}", time.time() - 5 * 3600, "social")
        produce_events(broker.bootstrap, pipeline.prefix, [*more, late_cart])
        events += [*more, late_cart]
        wait_for(lambda: exports_expected(first, events), 60, "numbers after one worker left")

        first.kill()  # and a crash: a new worker rebuilds everything from the checkpoint log
        replacement = pipeline.start_worker(tmp_path)
        wait_for(
            lambda: exports_expected(replacement, events), 60, "numbers after SIGKILL and restart"
        )
    finally:
        pipeline.stop()
