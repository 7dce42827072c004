"""The whole-shop view as a prometheus_client collector, computed at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.domain.catalog import METRIC_SOURCES
from pipeline.engine.view import View

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
    (
        "misplaced",
        "cx_events_misplaced",
        "Records that arrived off their key's murmur2 partition and were forwarded there.",
        ["topic"],
    ),
)


def pipeline_counters(view: View, now: float) -> Iterator[Metric]:
    """Whole-shop counters, rebuilt from checkpoints: they survive restarts without resets."""
    for total_name, metric_name, doc, labels in PIPELINE_COUNTERS:
        family = CounterMetricFamily(metric_name, doc, labels=labels)
        for label_values, amount in view.totals_named(total_name):
            family.add_metric(list(label_values), float(amount))
        yield family


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
        for source in METRIC_SOURCES:
            yield from source(self.view, now)
        yield from pipeline_counters(self.view, now)
