"""The soak's time machine and probes, shared with tests/integration/test_soak.py: one
accelerated clock for the simulator and the worker, the feed that paces the simulator by it,
a warmed-up simulator, and the sizes of everything in a worker that could grow."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from pipeline.tools.simulate import ShopSimulator, produce

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from pipeline.worker.service import Worker

__all__ = [
    "DAY",
    "HOUR",
    "AcceleratedClock",
    "feed",
    "midnight_before",
    "structure_sizes",
    "until",
    "warmed_up",
]

HOUR = 3600.0
DAY = 86_400.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AcceleratedClock:
    """Simulated epoch seconds: ``start`` at real time ``origin``, then ``speed`` x real time.

    Plain data, so a child process given the same three numbers reads the same time.
    """

    start: float
    speed: float
    origin: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.start + (time.time() - self.origin) * self.speed

    def argv(self) -> list[str]:
        """The options :mod:`bench.soak_worker` rebuilds this clock from."""
        return [
            *("--clock-start", repr(self.start)),
            *("--clock-origin", repr(self.origin)),
            *("--speed", repr(self.speed)),
        ]


def midnight_before(t: float, days: int) -> float:
    """UTC midnight ``days`` days before ``t``'s day: simulated hour n is then hour n of a day."""
    return (t // DAY - days) * DAY


async def until(
    predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``predicate`` (sync or async) until truthy; AssertionError after ``timeout`` s.

    The asyncio twin of ``tests.integration.harness.wait_for``: the worker under test may run
    in the same event loop, so the wait must not block it.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def feed(
    simulator: ShopSimulator,
    producer: AIOKafkaProducer,
    prefix: str,
    clock: Callable[[], float],
    end: float,
    *,
    tick: float = 0.1,
) -> int:
    """Produce the simulator's events as ``clock`` reaches them, up to ``end``; returns the count.

    ``pipeline.tools.simulate.run_live`` paces its ticks with ``clock`` too, which under an
    accelerated clock turns its sleep into a busy loop; here ``tick`` is real seconds.
    """
    sent = 0
    while True:
        now = min(clock(), end)
        batch = simulator.events_until(now)
        if batch:
            sent += await produce(batch, producer, prefix)
        if now >= end:
            return sent
        await asyncio.sleep(tick)


def warmed_up(*, rate: float, seed: int, start: float, warm_up: float) -> ShopSimulator:
    """A simulator that has run ``warm_up`` seconds up to ``start``, its events thrown away.

    A cold simulator's traffic is not stationary for days (orders ship and deliver 1-4 days
    after they are placed, returns and reopens come later still), so the worker's state would
    grow with the traffic itself; a warm one feeds, from ``start`` on, a shop that has been
    running for a while.
    """
    simulator = ShopSimulator(rate=rate, seed=seed, start=start - warm_up)
    simulator.events_until(start)
    return simulator


def structure_sizes(worker: Worker) -> dict[str, int]:
    """Lengths of everything in a worker that could grow with traffic (a few ms at most).

    A diagnostic, so it reads some private attributes (timer heaps).
    """
    processors = list(worker.processors.values())
    view = worker.view
    outbox = worker.delivery.outbox if worker.delivery else None

    def total(attribute: str) -> int:
        return sum(len(getattr(p.handler, attribute, ())) for p in processors)

    return {
        "view_buckets": view.store.bucket_count(),
        "view_series": sum(1 for _ in view.store.series()),
        "view_totals": len(view.totals),
        "view_index_minutes": sum(len(entry.minutes) for entry in view.index.values()),
        "view_ledger": len(view.ledger.applied),
        "dedupe_ids": sum(len(p.ids) for p in processors),
        "pending_observations": sum(len(p.out.pending) for p in processors),
        "carts": total("carts"),
        "orders": total("orders"),
        "tickets": total("tickets"),
        "timers": total("_due"),
        "outbox": len(outbox.before) + len(outbox.checkpoints) if outbox else 0,
        "partitions": len(processors),
        "allocated_blocks": sys.getallocatedblocks(),
    }
