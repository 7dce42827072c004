"""The whole-shop view as a prometheus_client collector, computed at scrape time, and its text,
re-rendered only when it can have changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.domain.catalog import METRIC_SOURCES
from pipeline.engine.view import View
from pipeline.http.render import TextRenderer

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


PIPELINE_SAMPLES = frozenset(f"{name}_total" for _, name, _, _ in PIPELINE_COUNTERS)
"""Sample names of :data:`PIPELINE_COUNTERS`: a scrape asking for these only skips the CX
families (what pollers of progress, like the benchmark, ask for)."""

HEALTH_PREFIX = "cx_pipeline_"
"""The worker's own health metrics (pipeline/http/exposition); no view family is named so."""


def asks_for_domain(names: frozenset[str]) -> bool:
    """Whether a ``name[]`` filter can match a sample of a domain family: every one is named
    ``cx_*``, and none is a pipeline counter or a health metric."""
    return any(
        name.startswith("cx_")
        and not name.startswith(HEALTH_PREFIX)
        and name not in PIPELINE_SAMPLES
        for name in names
    )


def only_samples(families: Iterable[Metric], names: frozenset[str]) -> Iterator[Metric]:
    """The families with only the samples ``names`` lists, empty ones left out: what
    prometheus_client's ``restricted_registry`` (``/metrics?name[]=...``) gives."""
    for family in families:
        samples = [sample for sample in family.samples if sample.name in names]
        if samples:
            picked = Metric(family.name, family.documentation, family.type, family.unit)
            picked.samples = samples
            yield picked


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
        yield from self.families(self.clock())

    def families(self, now: float) -> Iterator[Metric]:
        for source in METRIC_SOURCES:
            yield from source(self.view, now)
        yield from pipeline_counters(self.view, now)


class ViewExposition:
    """The view's families as Prometheus text, exact as of every scrape, computed at most once
    per state of the view.

    Every exported value is a function of the view's content and of which buckets each window
    covers (windows move in whole buckets, 10 s or 60 s), so while neither changed the last text
    is still exact: an idle or lightly loaded worker answers repeated scrapes (several Prometheus
    servers, a dashboard, a benchmark polling every 100 ms) without recomputing them.
    """

    def __init__(self, view: View, clock: Callable[[], float], ready: Callable[[], bool]) -> None:
        self.collector = ViewCollector(view, clock, ready)
        self.renderer = TextRenderer()
        self._key: tuple[object, ...] | None = None
        self._text = b""

    def text(self) -> bytes:
        collector = self.collector
        if not collector.ready():
            return b""
        view, now = collector.view, collector.clock()
        edges = tuple(
            (int((now - spec.length) // spec.bucket), int(now // spec.bucket))
            for spec in view.specs
        )
        key = (view.version, edges)
        if key != self._key:
            self._text = self.renderer.render(collector.families(now))
            self._key = key
        return self._text

    def text_of(self, names: frozenset[str]) -> bytes:
        """Only the samples ``names`` lists (``/metrics?name[]=...``); the CX families are not
        even computed unless a name can be one of theirs: a poller of progress asking for the
        event counters, a health gauge and Python's GC counts (the benchmark, ten times a
        second) cost ~12 ms of the worker's CPU per poll when they were."""
        collector = self.collector
        if not collector.ready():
            return b""
        view, now = collector.view, collector.clock()
        families = (
            collector.families(now) if asks_for_domain(names) else pipeline_counters(view, now)
        )
        return self.renderer.render(only_samples(families, names))
