"""Prometheus text format (0.0.4) for the view's families, byte-identical to
``prometheus_client.generate_latest`` but with label strings remembered between scrapes.

The view exports a few thousand samples whose label sets barely change; ``generate_latest``
re-validates and re-escapes every label name and value on every scrape, ~60 % of a scrape's CPU.
Here each label set is formatted once. Families of kinds the view never builds (info, stateset,
gauge histograms, samples with timestamps) go through ``generate_latest`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_PLAIN_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}
_PLAIN_TYPES |= {"summary": "summary", "unknown": "untyped"}
_MAX_REMEMBERED = 100_000
"""Label sets remembered; beyond that the memo starts over (bounded whatever the labels)."""


class _Single(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


def _escape_name(name: str) -> str:
    return openmetrics.escape_metric_name(name, openmetrics.UNDERSCORES)


def _escape_value(value: str) -> str:
    return openmetrics._escape(value, openmetrics.ALLOWUTF8, False)


def _label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    pairs = ",".join(
        f'{openmetrics.escape_label_name(name, openmetrics.UNDERSCORES)}="{_escape_value(value)}"'
        for name, value in sorted(labels.items())
    )
    return "{" + pairs + "}"


class TextRenderer:
    """Renders metric families; keeps its memo of label strings across calls (one per server)."""

    def __init__(self) -> None:
        self._labels: dict[tuple[tuple[str, str], ...], str] = {}
        self._names: dict[str, str] = {}

    def render(self, metrics: Iterable[Metric]) -> bytes:
        output: list[str] = []
        for metric in metrics:
            if not self._render_plain(metric, output):
                output.append(generate_latest(_Single(metric)).decode())
        return "".join(output).encode()

    def _render_plain(self, metric: Metric, output: list[str]) -> bool:
        kind = _PLAIN_TYPES.get(metric.type)
        special = (metric.name + "_created", metric.name + "_gsum", metric.name + "_gcount")
        if kind is None or any(
            s.timestamp is not None or s.name in special for s in metric.samples
        ):
            return False
        family = metric.name + "_total" if kind == "counter" else metric.name
        name = _escape_name(family)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        output.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        names, labels = self._names, self._labels
        if len(labels) > _MAX_REMEMBERED:
            labels.clear()
        for sample in metric.samples:
            sample_name = names.get(sample.name)
            if sample_name is None:
                sample_name = names[sample.name] = _escape_name(sample.name)
            key = tuple(sample.labels.items())
            label_text = labels.get(key)
            if label_text is None:
                label_text = labels[key] = _label_text(sample.labels)
            output.append(f"{sample_name}{label_text} {floatToGoString(sample.value)}\n")
        return True
