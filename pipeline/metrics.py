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

NPS_CATEGORIES = ("promoter", "passive", "detractor")


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | Decimal) else 0.0


class WindowReader:
    """Reads one window of the view as plain numbers (None = no observation)."""

    def __init__(self, view: View, spec: WindowSpec, now: float) -> None:
        self.view, self.spec, self.now = view, spec, now

    def count(self, name: str, labels: tuple[str, ...]) -> float | None:
        value = self.view.window_value(name, labels, self.spec, self.now)
        return None if value is None else _number(value)


def _gauge(name: str, doc: str, *extra: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["window", "channel", *extra])


def survey_metrics(view: View, now: float) -> Iterator[Metric]:
    nps_score = _gauge("cx_nps_score", "Net Promoter Score, -100..100, over the window.")
    nps_responses = _gauge("cx_nps_responses", "NPS responses in the window.", "category")
    csat = _gauge("cx_csat_ratio", "Share of CSAT responses scoring 4 or 5, 0..1.")
    ces = _gauge("cx_ces_score", "Mean Customer Effort Score (1-7).")
    responses = _gauge("cx_survey_responses", "Survey responses in the window.", "survey")
    channels = sorted({labels[0] for labels in view.labels_of("survey_responses")})
    for spec in view.specs:
        read = WindowReader(view, spec, now)
        for channel in channels:
            base = [spec.name, channel]
            counts = {c: read.count("nps", (channel, c)) for c in NPS_CATEGORIES}
            if any(v is not None for v in counts.values()):
                total = sum(v or 0.0 for v in counts.values())
                for category, value in counts.items():
                    nps_responses.add_metric([*base, category], value or 0.0)
                if total:
                    promoters = counts["promoter"] or 0.0
                    detractors = counts["detractor"] or 0.0
                    nps_score.add_metric(base, 100.0 * (promoters - detractors) / total)
            for survey in ("nps", "csat", "ces"):
                n = read.count("survey_responses", (channel, survey))
                if n is None:
                    continue
                responses.add_metric([*base, survey], n)
                if not n:
                    continue
                if survey == "csat":
                    csat.add_metric(base, (read.count("csat_satisfied", (channel,)) or 0.0) / n)
                elif survey == "ces":
                    ces.add_metric(base, (read.count("ces_sum", (channel,)) or 0.0) / n)
    yield from (nps_score, nps_responses, csat, ces, responses)


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
SOURCES: tuple[MetricSource, ...] = (survey_metrics, pipeline_counters)


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
        for source in SOURCES:
            yield from source(self.view, now)
