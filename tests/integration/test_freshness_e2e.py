"""A caught-up worker shows new events well before its flush interval is over.

``CX_FLUSH_INTERVAL`` paces checkpoints under a backlog; a worker that has read everything
checkpoints after a fifth of it (pipeline/worker/ingest.py, ``CAUGHT_UP_FLUSH_SHARE``). With a
10 s interval, each round of events below must be counted within 2 s + slack: at the full
interval, the second round (sent right after the first round's flush) would wait ~10 s.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import Pipeline, produce_events, wait_for
from tests.integration.stories import survey

pytestmark = pytest.mark.integration

INTERVAL = 10.0
SLACK = 2.0
"""Fetch waits, the delivery's round trips and the view's fetch, on a shared machine."""


def test_a_caught_up_worker_checkpoints_within_a_fifth_of_its_flush_interval(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap, extra_env={"CX_FLUSH_INTERVAL": str(INTERVAL)})
    try:
        worker = pipeline.start_worker(tmp_path)
        counted = 0.0
        wait_for(
            lambda: (s := worker.snapshot()) and s.assigned_partitions == 16,
            60,
            "all 4 x 4 source partitions assigned",
        )
        for round_ in range(4):  # round 0 warms up: positions, the view's first checkpoints
            events = [survey(time.time() - 5, score) for score in range(round_ + 1, 11)]
            sent = time.monotonic()
            produce_events(broker.bootstrap, pipeline.prefix, events)
            expected = counted + len(events)
            wait_for(
                lambda expected=expected: (s := worker.snapshot()) and s.events >= expected,
                3 * INTERVAL,
                f"round {round_} counted",
                interval=0.05,
            )
            took = time.monotonic() - sent
            counted = expected
            if round_:
                assert took < INTERVAL / 5 + SLACK, f"round {round_}: counted after {took:.1f} s"
    finally:
        pipeline.stop()
