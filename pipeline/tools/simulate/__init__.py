"""A deterministic, realistic shop-traffic simulator and a thin Kafka producer for it.

It drives the demo dashboards and the benchmark mixes, so the traffic has the shapes real shops
show: a day/night cycle, channel mix, a checkout funnel that leaks at every step (more on mobile),
abandoned carts that are sometimes recovered, orders shipped hours and delivered days later (~90 %
on time), support tickets with log-normal reply and resolution times and reopens, and surveys
whose scores follow the experience (late delivery, slow resolution) they rate.

Design:

* Pure generation. One :class:`~pipeline.tools.simulate.core.Timeline` keeps a time-ordered heap
  of *pending actions*; every action emits one event at its time and schedules its follow-ups
  (never earlier than itself). ``events_until(t)`` pops every action due by ``t``, so an event
  is never emitted before its ``occurred_at`` has come: a live producer and a 24 h historic run
  share one code path, and the output does not depend on how time is chunked.
* One story generator per domain, each a module: ``carts`` (sessions, checkout, and the orders
  with their shipping, delivery and refunds), ``tickets``, ``surveys``; ``simulator`` starts the
  stories (root arrivals), ``spike`` describes a TTR spike and an SLA spike, ``live`` produces into Kafka (or any
  ``EventSink``), ``http_sink`` posts through the HTTP collector instead.
* Deterministic: one ``random.Random(seed)`` drives behaviour and a second one, seeded with
  ``(seed, start)``, draws ids, so the same seed and start give the same events (a restart at
  another time gets fresh ids and is not swallowed by the pipeline's de-duplication).
* Memory is bounded by the entities in flight (open carts, tickets, undelivered orders, pending
  surveys), each one heap entry; nothing accumulates over time.

It may import :mod:`pipeline.settings`, the default SLA policy (an SLA spike's urgent tickets
miss its targets) and the standard library, plus orjson for producing and
aiohttp (already there for faust-streaming and the collector) for posting to the collector.
"""

from pipeline.tools.simulate.core import CHANNELS, DIURNAL_PROFILE, SimEvent
from pipeline.tools.simulate.http_sink import CollectorRefused, HttpSink
from pipeline.tools.simulate.live import EventSink, produce, run_live
from pipeline.tools.simulate.simulator import ShopSimulator
from pipeline.tools.simulate.spike import SlaSpike, TtrSpike, parse_sla_spike, parse_ttr_spike
from pipeline.tools.simulate.tickets import TICKET_CHANNEL_WEIGHTS

__all__ = [
    "CHANNELS",
    "DIURNAL_PROFILE",
    "TICKET_CHANNEL_WEIGHTS",
    "CollectorRefused",
    "EventSink",
    "HttpSink",
    "ShopSimulator",
    "SimEvent",
    "SlaSpike",
    "TtrSpike",
    "parse_sla_spike",
    "parse_ttr_spike",
    "produce",
    "run_live",
]
