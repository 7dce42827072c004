"""Bounded memory (issue #5): once the windows are full, nothing in a worker grows with traffic.

RSS is too noisy to assert on in CI (``python -m bench.soak`` measures it); instead a worker
runs in this process on an accelerated clock, fed 36 simulated hours of shop traffic, and the
structures that could grow are counted (:func:`bench.soak.structure_sizes`) at simulated hours
26, 31 and 36, each time once every event produced so far is counted by the view.

Why the numbers:

* Traffic starts around 10:00 of a simulated day, so that hours 26..36 are the busy afternoon:
  a structure that grows with events then holds ~1.2x its hour-26 size at hour 31 and ~1.5x at
  hour 36 (the simulator's day profile), while one bounded by the 24 h window is periodic and
  stays within a few percent. Not quite: open tickets and the short windows' sparse buckets
  follow the hour's traffic too, and were seen at 1.16-1.22x at hour 36 (a flaky 1.15 limit).
  ``GROWTH`` = 1.3 sits between that and the growth of a structure that is never trimmed.
  Checked: with ``IdStore.expire`` disabled the test fails (dedupe ids 1.50x at hour 36).
* Orders and tickets are forgotten 30 days after their last event (pipeline/domain/orders.py,
  pipeline/domain/tickets.py), so they cannot level off in 36 simulated hours (they fail the check:
  orders 1.36x, tickets 1.43x at hour 36); their retention is cut to one day here
  (``CX_ENTITY_RETENTION``): the forgetting is what is under test. An order is also kept until
  each promised delivery is decided (the ``order.delivery_late`` signal needs it: promised + the
  allowed lateness, or its delivery), and simulated promises run up to days ahead, so orders
  cannot level off in 36 hours either; for them the test checks instead that no order outlives
  both its retention and its promises (:func:`overdue_orders`).
* The simulator is warmed up for four simulated days without producing, so that orders already
  in delivery, open tickets and recovering carts arrive from the start, as in a shop that has
  been running for a while, instead of piling up over the first days.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from bench.soak import (
    AcceleratedClock,
    feed,
    midnight_before,
    structure_sizes,
    until,
    warmed_up,
)
from pipeline.settings import Settings
from pipeline.worker.service import Worker
from tests.integration.harness import Pipeline

pytestmark = pytest.mark.integration

HOUR = 3600.0
DAY = 86_400.0
SPEED = 4000.0
"""Simulated seconds per real second: 36 simulated hours take ~33 s."""
RATE = 0.5
"""Simulated events/s (daily mean): ~2,000 events/s real, a fraction of a worker's capacity."""
WARM_UP = 4 * DAY
CHECKS = (26, 31, 36)
GROWTH = 1.3
SLACK = 20
"""Absolute allowance for structures that are tiny or empty (pending observations, outbox)."""
BOUNDED = (
    "view_buckets",
    "view_series",
    "view_index_minutes",
    "dedupe_ids",
    "pending_observations",
    "carts",
    "tickets",
    "timers",
)
"""Not the outbox: it holds the flush being delivered, so a sample taken mid-delivery shows that
flush's records (hundreds with forwards and signals); it must instead be empty after the stop."""


async def test_structures_stay_bounded_once_windows_are_full(
    broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(
        broker.bootstrap,
        extra_env={
            "CX_METRICS_PORT": "0",
            "CX_SNAPSHOT_INTERVAL": str(6 * HOUR),
            "CX_ENTITY_RETENTION": str(DAY),
        },
    )
    for name, value in pipeline.env().items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    start = midnight_before(time.time(), 7) + 10 * HOUR
    clock = AcceleratedClock(start=start, speed=0.0)  # stands still while the worker starts
    worker = Worker(settings, clock=lambda: clock())
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
    sizes: dict[int, dict[str, int]] = {}
    task = asyncio.create_task(worker.run())
    try:
        simulator = await asyncio.to_thread(
            warmed_up, rate=RATE, seed=5, start=start, warm_up=WARM_UP
        )
        await producer.start()
        await until(lambda: task.done() or (worker.view_ready and worker.processors), 30, "ready")
        assert not task.done(), task.exception()
        clock = AcceleratedClock(start=start, speed=SPEED)
        sent = 0
        for hour in CHECKS:
            sent += await feed(simulator, producer, pipeline.prefix, clock, start + hour * HOUR)
            await until(
                lambda sent=sent: task.done() or counted(worker) >= sent,
                30,
                f"hour {hour}'s events counted",
            )
            assert not task.done(), task.exception()
            sizes[hour] = structure_sizes(worker)
            overdue = overdue_orders(worker, clock(), DAY)
            assert not overdue, f"orders kept past retention and promises at hour {hour}: {overdue}"
    finally:
        worker.stop()
        await producer.stop()
        await asyncio.wait_for(task, 30)
    assert structure_sizes(worker)["outbox"] == 0, "the final flush left records undelivered"

    first = sizes[CHECKS[0]]
    assert first["partitions"] == first["view_ledger"] == 16
    assert first["dedupe_ids"] > 10_000 and first["carts"] > 1_000, first  # real traffic
    grown = {
        (name, hour): (first[name], sizes[hour][name])
        for hour in CHECKS[1:]
        for name in BOUNDED
        if sizes[hour][name] > first[name] * GROWTH + SLACK
    }
    assert not grown, f"grew after the windows were full: {grown}; all sizes: {sizes}"
    print(f"sizes at simulated hours {CHECKS}: {sizes}")


def overdue_orders(worker: Worker, now: float, retention: float, slack: float = 6 * HOUR) -> list:
    """Orders whose last event is older than ``retention`` and whose every promise in force has
    passed (+ lateness) or been met by a delivery: they should have been forgotten by ``now``.

    ``slack`` covers the worker's tick trailing the clock: at 4000x a second of real time under
    load is more than an hour of simulated time."""
    overdue = []
    for processor in worker.processors.values():
        handler = processor.handler
        lateness = getattr(handler, "lateness", None)
        for order_id, order in getattr(handler, "orders", {}).items():
            promises = [s[1] for s in order.promises_in_force()]
            open_promise = any(
                promise + lateness + slack > now
                and (order.delivered_at is None or order.delivered_at > promise)
                for promise in promises
            )
            if not open_promise and order.last_time + retention + slack < now:
                overdue.append(order_id)
    return overdue[:10]


def counted(worker: Worker) -> int:
    """Events the view has counted (``cx_events_total``; late ones included)."""
    return sum(int(amount) for _, amount in worker.view.totals_named("events"))
