"""Carts whose orders are processed seconds after them (a backfill behind a queue of orders)
still convert: a cart is decided only once every order already in Kafka reached it."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.integration.harness import Pipeline, cx_samples, produce_events, wait_for
from tests.integration.stories import item, order
from tests.oracle import CART_METRICS, WINDOWS, cart_expectations

pytestmark = pytest.mark.integration


def test_backfilled_carts_convert_when_their_orders_queue_behind_thousands(broker, tmp_path):
    pipeline = Pipeline(
        broker.bootstrap, extra_env={"CX_QUIET_PERIOD": "0.2", "CX_MAX_BATCH": "500"}
    )
    try:
        start = time.time() - 3 * 3600  # lateness long passed: nothing waits for late events
        carts = [f"bf-{uuid.uuid4().hex}" for _ in range(40)]
        items = [item(cart, start + i) for i, cart in enumerate(carts)]
        converting = [order(cart, start + i + 60) for i, cart in enumerate(carts)]
        queue = [order(None, start + 120 + i / 100) for i in range(30_000)]
        produce_events(broker.bootstrap, pipeline.prefix, queue + converting)
        produce_events(broker.bootstrap, pipeline.prefix, items)
        events = queue + converting + items

        worker = pipeline.start_worker(tmp_path)
        wait_for(
            lambda: sum(cx_samples(worker.samples(), ("cx_events_total",)).values()) == len(events),
            120,
            "every event counted",
        )
        want = cart_expectations(events, time.time(), WINDOWS)
        assert sum(v for k, v in want.items() if k[0] == "cx_carts") == len(carts)
        wait_for(
            lambda: cx_samples(worker.samples(), CART_METRICS) == want,
            30,
            f"every cart converted, none abandoned (want {want})",
        )
    finally:
        pipeline.stop()
