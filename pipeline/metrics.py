"""Exposition: the whole-shop view -> Prometheus metric families, computed at scrape time.

Scores and ratios are derived here from the window's counts and sums (never averaged), so an empty
window yields no sample at all instead of a misleading 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.view import View
from pipeline.windows import WindowSpec


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | Decimal) else 0.0


def gauge(name: str, doc: str, *extra: str) -> GaugeMetricFamily:
    """A windowed CX gauge: labels ``window``, ``channel`` and the metric's own."""
    return GaugeMetricFamily(name, doc, labels=["window", "channel", *extra])


class WindowReader:
    """Reads one window of the view as plain numbers (None = no observation)."""

    def __init__(self, view: View, spec: WindowSpec, now: float) -> None:
        self.view, self.spec, self.now = view, spec, now

    def count(self, name: str, labels: tuple[str, ...]) -> float | None:
        value = self.view.window_value(name, labels, self.spec, self.now)
        return None if value is None else _number(value)


PIPELINE_COUNTERS = (
    (
        "events",
        "cx_events",
        "Valid first-seen events, late ones included.",
        ["topic", "event_type"],
    ),
    ("rejected", "cx_events_rejected", "Events dead-lettered, by reason.", ["topic", "reason"]),
    ("duplicate", "cx_events_duplicate", "Duplicate events ignored.", ["topic"]),
    ("late", "cx_events_late", "Events too late to aggregate.", ["topic"]),
)


def pipeline_counters(view: View, now: float) -> Iterator[Metric]:
    """Whole-shop counters, rebuilt from checkpoints: they survive restarts without resets."""
    for total_name, metric_name, doc, labels in PIPELINE_COUNTERS:
        family = CounterMetricFamily(metric_name, doc, labels=labels)
        for label_values, amount in view.totals_named(total_name):
            family.add_metric(list(label_values), float(amount))
        yield family


MetricSource = Callable[[View, float], Iterator[Metric]]


def metric_sources() -> tuple[MetricSource, ...]:
    """Every family producer, one per domain module (imported late: they import this module)."""
    from pipeline import carts, orders, surveys, tickets

    return (surveys.metrics, tickets.metrics, carts.metrics, orders.metrics, pipeline_counters)


class ViewCollector(Collector):
    """prometheus_client collector over a :class:`View`; silent until the view has caught up."""

    def __init__(self, view: View, clock: Callable[[], float], ready: Callable[[], bool]) -> None:
        self.view, self.clock, self.ready = view, clock, ready

    def describe(self) -> list[Metric]:
        return []  # dynamic families; do not collect at registration time

    def collect(self) -> Iterator[Metric]:
        if not self.ready():
            return
        now = self.clock()
        for source in metric_sources():
            yield from source(self.view, now)
