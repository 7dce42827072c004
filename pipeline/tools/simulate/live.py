"""Simulated traffic into Kafka: a thin batching producer and the real-time runner.

The runner hands each due batch to a Kafka producer (:func:`produce`) or to any
:class:`EventSink`, such as :class:`~pipeline.tools.simulate.http_sink.HttpSink` (through the
HTTP collector), so both paths share the same timing and generation.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import orjson

from pipeline.tools.simulate.core import SimEvent
from pipeline.tools.simulate.simulator import Ramp, ShopSimulator
from pipeline.tools.simulate.spike import SlaSpike, TtrSpike


class _Producer(Protocol):
    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Any: ...


@runtime_checkable
class EventSink(Protocol):
    """Takes whole batches of simulated events; returns how many were delivered."""

    async def send_events(self, events: Sequence[SimEvent]) -> int: ...


async def produce(
    events: Iterable[SimEvent], producer: _Producer, topic_prefix: str = "cx.", *, batch: int = 2000
) -> int:
    """Send events with an already started ``AIOKafkaProducer``; returns how many were sent.

    ``send`` only enqueues (it waits when the producer's buffer is full); delivery futures are
    awaited per ``batch`` so throughput is not one round trip per event, and a failed delivery
    still raises here.
    """
    dumps = orjson.dumps
    pending: list[Awaitable[Any]] = []
    count = 0
    for event in events:
        pending.append(
            await producer.send(
                topic_prefix + event.topic, value=dumps(event.value), key=event.key.encode()
            )
        )
        count += 1
        if len(pending) >= batch:
            await asyncio.gather(*pending)
            pending.clear()
    if pending:
        await asyncio.gather(*pending)
    return count


async def run_live(
    producer: _Producer | EventSink,
    *,
    rate: float,
    duration: float | None,
    topic_prefix: str = "cx.",
    seed: int | None = None,
    ttr_spike: TtrSpike | None = None,
    sla_spike: SlaSpike | None = None,
    clock: Callable[[], float] = time.time,
    on_batch: Callable[[int], object] | None = None,
    history: float = 0.0,
    ramp_half_life: float | None = None,
    ramp_full: float = 0.0,
    tick: float = 0.1,
    **options: Any,
) -> int:
    """Produce simulated traffic in real time until ``duration`` s have passed (None = forever).

    Every ``tick`` the events due by ``clock()`` are produced, so nothing is ever in the future.
    ``history`` seconds of traffic before now are produced first, as fast as possible (so
    deliveries, TTRs and spikes have a past to draw on). With ``ramp_half_life`` the history is
    a growing shop (:class:`Ramp`): full rate over its last ``ramp_full`` seconds, halved every
    ``ramp_half_life`` seconds before, so it takes a fraction of the events to produce and read.
    ``options`` go to :class:`ShopSimulator`.
    ``on_batch(count)`` is called after each produced batch. Returns the number of events sent.
    ``producer`` is a started ``AIOKafkaProducer`` or an :class:`EventSink`.
    """
    if isinstance(producer, EventSink):
        deliver: Callable[[list[SimEvent]], Awaitable[int]] = producer.send_events
    else:

        async def deliver(batch: list[SimEvent]) -> int:
            return await produce(batch, producer, topic_prefix)

    began = clock()
    simulator = ShopSimulator(
        rate=rate,
        seed=seed,
        start=began - history,
        ramp=None if ramp_half_life is None else Ramp(began - ramp_full, ramp_half_life),
        ttr_spike=ttr_spike,
        sla_spike=sla_spike,
        **options,
    )
    stop = None if duration is None else began + duration
    sent = 0
    while True:
        now = clock()
        target = now if stop is None else min(now, stop)
        while True:  # catch up in slices of 60 s: bounded batches after a long pause/history
            step = min(target, simulator.now + 60.0)
            batch = simulator.events_until(step)
            if batch:
                count = await deliver(batch)
                sent += count
                if on_batch is not None:
                    result = on_batch(count)
                    if inspect.isawaitable(result):
                        await result
            if step >= target:
                break
        if stop is not None and now >= stop:
            return sent
        await asyncio.sleep(max(0.0, tick - (clock() - now)))
