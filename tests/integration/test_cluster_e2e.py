"""Two workers, one group, one broker: whole-shop numbers from each, through stops and SIGKILL.

Carts and their orders travel on different topics and partitions (and may arrive in either
order); every worker must still export exactly what tests/oracle.py computes from the events.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.integration.harness import Pipeline, cx_samples, produce_events, wait_for
from tests.integration.stories import cart_story, item, survey
from tests.oracle import (
    CART_METRICS,
    SURVEY_METRICS,
    WINDOWS,
    cart_expectations,
    survey_expectations,
)

pytestmark = pytest.mark.integration

ENV = {"CX_QUIET_PERIOD": "2"}


def expected(events: list[dict]) -> dict:
    now = time.time()
    return {**cart_expectations(events, now, WINDOWS), **survey_expectations(events, now, WINDOWS)}


def owned(worker) -> float:
    return worker.samples().get(("cx_pipeline_assigned_partitions", frozenset()), 0.0)


def exports_expected(worker, events: list[dict]) -> bool:
    want = expected(events)
    got = cx_samples(worker.samples(), CART_METRICS + SURVEY_METRICS)
    wrong = {
        k: (want.get(k), got.get(k))
        for k in set(want) | set(got)
        if got.get(k) != pytest.approx(want.get(k))
    }
    if wrong:
        raise AssertionError(
            f"differences (expected, exported): {sorted(wrong.items(), key=str)[:6]}"
        )
    return True


def test_two_workers_export_whole_shop_numbers_through_stop_and_kill(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap, extra_env=ENV)
    try:
        first, second = pipeline.start_worker(tmp_path), pipeline.start_worker(tmp_path)
        # produce once the group has settled: a rebalance mid-backfill can hold an orders
        # partition longer than the quiet period (see pipeline/domain/carts.py)
        wait_for(
            lambda: owned(first) > 0 and owned(second) > 0 and owned(first) + owned(second) == 16,
            60,
            "both workers to own partitions",
        )
        now = time.time()
        orders_first, carts = cart_story(now)
        surveys = [survey(now - 60 * i - 17, i % 11, ["web", "chat"][i % 2]) for i in range(40)]
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
