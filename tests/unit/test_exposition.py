"""/metrics text: the memoising renderer and the view's cached text against prometheus_client."""

from __future__ import annotations

import random
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from bench.data import encode_events, realistic_events
from pipeline.aggregates.windows import window_specs
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from pipeline.http.render import TextRenderer
from pipeline.http.view_metrics import (
    HEALTH_PREFIX,
    PIPELINE_SAMPLES,
    ViewCollector,
    ViewExposition,
)
from pipeline.settings import Settings
from pipeline.worker.handlers import make_handler


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def reference(collector: Collector) -> bytes:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry)


label_values = st.text(alphabet=st.sampled_from('ab\\"\n é{}=,'), max_size=6)
numbers = st.floats(allow_nan=True) | st.integers(-(10**20), 10**20)


@st.composite
def families(draw: st.DrawFn) -> Metric:
    kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "info"]))
    name = draw(st.sampled_from(["cx_a", "cx_b_seconds", "cx_c_ratio"]))
    doc = draw(st.text(alphabet=st.sampled_from("x \\\n"), max_size=5))
    labels = draw(st.lists(st.sampled_from(["channel", "window", "le_x"]), unique=True))
    rows = draw(st.lists(st.tuples(*[label_values] * len(labels)), max_size=4))
    metric: Metric
    if kind == "counter":
        metric = CounterMetricFamily(name, doc, labels=labels)
        for row in rows:
            metric.add_metric(list(row), abs(draw(numbers)))
    elif kind == "gauge":
        metric = GaugeMetricFamily(name, doc, labels=labels)
        for row in rows:
            metric.add_metric(list(row), draw(numbers))
    elif kind == "histogram":
        metric = HistogramMetricFamily(name, doc, labels=labels)
        for row in rows:
            metric.add_metric(list(row), [("1.0", 1), ("+Inf", 2)], 3.5)
    elif kind == "summary":
        metric = SummaryMetricFamily(name, doc, labels=labels)
        for row in rows:
            metric.add_metric(list(row), count_value=2, sum_value=draw(numbers))
    else:  # not a kind the view builds: must fall back to prometheus_client
        metric = InfoMetricFamily(name, doc, labels=labels)
        for row in rows:
            metric.add_metric(list(row), {"version": "1"})
    return metric


@settings(max_examples=300, deadline=None)
@given(metrics=st.lists(families(), max_size=4))
def test_renderer_is_byte_identical_to_prometheus_client_and_stays_so(
    metrics: list[Metric],
) -> None:
    renderer = TextRenderer()
    expected = reference(_Fixed(metrics))
    assert renderer.render(metrics) == expected
    assert renderer.render(metrics) == expected  # second time from the memo


NOW = 1_800_000_000.0


def test_view_text_is_exact_at_every_scrape_while_the_view_and_the_clock_move() -> None:
    """Scrapes at random moments (same bucket, next bucket, far ahead) between checkpoints:
    the cached text must always equal a fresh computation at that moment."""
    settings_ = Settings(bootstrap_servers="unused:9092")
    records = encode_events(realistic_events(4000, seed=3, history=3 * 3600, now=NOW), 2)
    processors = {
        (topic, p): PartitionProcessor(
            topic=topic,
            topic_name=f"cx.{topic}",
            partition=p,
            handler=make_handler(topic, settings_),
            settings=settings_,
        )
        for topic in ("carts", "orders", "tickets", "surveys")
        for p in range(2)
    }
    view = View(window_specs(settings_.window_seconds))
    clock = [NOW]
    cached = ViewExposition(view, lambda: clock[0], lambda: True)
    fresh = ViewCollector(view, lambda: clock[0], lambda: True)
    rng = random.Random(7)
    offsets = dict.fromkeys(processors, 0)
    hits = 0
    for start in range(0, len(records), 500):
        for record in records[start : start + 500]:
            source = (record.topic, record.partition)
            processors[source].process(offsets[source], record.key, record.value, (), clock[0])
            offsets[source] += 1
        for processor in processors.values():
            processor.tick(clock[0])
            checkpoint = processor.take_checkpoint(clock[0])
            if checkpoint is not None:
                view.apply(Checkpoint.decode(checkpoint.encode(), for_view=True))
        for _ in range(6):
            before = cached._key
            text = cached.text()
            hits += cached._key == before
            assert text == reference(fresh), clock[0]
            clock[0] += rng.choice([0.0, 0.05, 3.0, 9.99, 60.0, 700.0])
    assert hits > 10  # the cache did serve repeated scrapes
    assert cached.text().count(b"\n") > 100


def test_view_text_is_empty_until_ready() -> None:
    view = View(window_specs((300,)))
    assert ViewExposition(view, lambda: NOW, lambda: False).text() == b""


def test_name_filter_gives_exactly_prometheus_clients_restricted_scrape() -> None:
    """``/metrics?name[]=...``: the pipeline-counter shortcut and the general path must both
    equal prometheus_client's ``restricted_registry`` over the full collector."""
    settings_ = Settings(bootstrap_servers="unused:9092")
    view = View(window_specs(settings_.window_seconds))
    records = encode_events(realistic_events(3000, seed=5, history=3 * 3600, now=NOW), 1)
    processors = {
        topic: PartitionProcessor(
            topic=topic,
            topic_name=f"cx.{topic}",
            partition=0,
            handler=make_handler(topic, settings_),
            settings=settings_,
        )
        for topic in ("carts", "orders", "tickets", "surveys")
    }
    for offset, record in enumerate(records):
        processors[record.topic].process(offset, record.key, record.value, (), NOW)
    for processor in processors.values():
        processor.tick(NOW)
        checkpoint = processor.take_checkpoint(NOW)
        assert checkpoint is not None
        view.apply(Checkpoint.decode(checkpoint.encode(), for_view=True))
    exposition = ViewExposition(view, lambda: NOW, lambda: True)
    full = reference(ViewCollector(view, lambda: NOW, lambda: True)).decode()
    every_sample = {_sample_name(line) for line in full.splitlines() if line[0] != "#"}
    cx = sorted(every_sample - PIPELINE_SAMPLES)
    assert all(name.startswith("cx_") for name in cx)
    assert not any(name.startswith(HEALTH_PREFIX) for name in cx)  # what the shortcut relies on
    progress = frozenset({"cx_events_total", "cx_pipeline_assigned_partitions", "python_gc_x"})
    for names in (
        PIPELINE_SAMPLES,
        frozenset({"cx_events_total"}),
        progress,
        frozenset({"cx_events_total", cx[0], cx[-1]}),
        frozenset({"no_such_sample"}),
    ):
        assert exposition.text_of(names).decode() == _restricted(full, names), names
    assert "cx_events_total{" in exposition.text_of(frozenset({"cx_events_total"})).decode()

    def not_computed(now: float) -> Iterator[Metric]:
        raise AssertionError("a poll of progress computed every CX family")

    exposition.collector.families = not_computed  # type: ignore[method-assign]
    assert exposition.text_of(progress).decode() == _restricted(full, progress)


def _sample_name(line: str) -> str:
    return line.split("{")[0].split(" ")[0]


def _restricted(text: str, names: frozenset[str]) -> str:
    """Oracle on the text: each family's sample lines named in ``names``, with its HELP and
    TYPE lines when at least one is kept."""
    out: list[str] = []
    header: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP"):
            header = [line]
        elif line.startswith("# TYPE"):
            header.append(line)
        elif _sample_name(line) in names:
            out += header
            header = []
            out.append(line)
    return "".join(out)
