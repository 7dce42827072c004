"""How domain modules read the whole-shop view at scrape time, without depending on the engine.

Each domain module defines its own metric families next to its rules (``metrics(view, now)``).
They read the view only through :class:`MetricView`, which the engine's ``View`` satisfies, so
the domain layer never imports the engine. Scores and ratios are derived from the window's
counts and sums (never averaged), so an empty window yields no sample instead of a misleading 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily

from pipeline.aggregates.delta import Labels, Value
from pipeline.aggregates.windows import WindowSpec


class MetricView(Protocol):
    """The read side of the whole-shop view that metric definitions use."""

    specs: tuple[WindowSpec, ...]

    def labels_of(self, name: str) -> list[Labels]:
        """Label tuples of every windowed series called ``name``."""

    def window_value(self, name: str, labels: Labels, spec: WindowSpec, now: float) -> Value | None:
        """The series' total over one window at ``now`` (None: no observation)."""

    def totals_named(self, name: str) -> Iterable[tuple[Labels, int | Decimal]]:
        """Cumulative (not windowed) totals called ``name``."""


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | Decimal) else 0.0


def gauge(name: str, doc: str, *extra: str) -> GaugeMetricFamily:
    """A windowed CX gauge: labels ``window``, ``channel`` and the metric's own."""
    return GaugeMetricFamily(name, doc, labels=["window", "channel", *extra])


class WindowReader:
    """Reads one window of the view as plain numbers (None = no observation)."""

    def __init__(self, view: MetricView, spec: WindowSpec, now: float) -> None:
        self.view, self.spec, self.now = view, spec, now

    def count(self, name: str, labels: tuple[str, ...]) -> float | None:
        value = self.view.window_value(name, labels, self.spec, self.now)
        return None if value is None else _number(value)
