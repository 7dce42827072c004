"""A scrape's metric families indexed by sample name, so the view model reads plain numbers.

The demo reads the very families ``/metrics`` exports (the worker's registry), never the view
directly: what the terminal shows can then never disagree with what Prometheus scrapes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from prometheus_client.core import Metric

Labels = Mapping[str, str]


class Scrape:
    """Samples of one collection, by sample name (``cx_events_total``, ``cx_ttr_seconds``...)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._samples: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
        for family in families:
            for sample in family.samples:
                self._samples[sample.name].append((sample.labels, float(sample.value)))

    def select(self, name: str, **match: str) -> list[tuple[Labels, float]]:
        """Samples called ``name`` whose labels include every ``match`` pair."""
        return [
            (labels, value)
            for labels, value in self._samples.get(name, ())
            if all(labels.get(key) == wanted for key, wanted in match.items())
        ]

    def total(self, name: str, **match: str) -> float | None:
        """Sum of the matching samples; None when there is none (not the same as 0)."""
        values = [value for _, value in self.select(name, **match)]
        return sum(values) if values else None

    def by(self, name: str, key: str, **match: str) -> dict[str, float]:
        """Matching samples summed per value of label ``key``."""
        grouped: dict[str, float] = defaultdict(float)
        for labels, value in self.select(name, **match):
            grouped[labels.get(key, "")] += value
        return dict(grouped)

    def view_ready(self) -> bool:
        """False until the worker's view has caught up: it exports no CX family before."""
        return (self.total("cx_pipeline_view_ready") or 0.0) >= 1
