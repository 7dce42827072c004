"""Every domain's metric families, in the dashboard's order: what a scrape exports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from pipeline.domain import carts, orders, surveys, tickets
from pipeline.domain.reading import MetricView

MetricSource = Callable[[MetricView, float], Iterator[Metric]]

METRIC_SOURCES: tuple[MetricSource, ...] = (
    surveys.metrics,
    tickets.metrics,
    carts.metrics,
    orders.metrics,
)
