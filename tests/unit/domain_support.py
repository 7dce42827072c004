"""Drive one domain handler through the real PartitionProcessor into a View, without Kafka."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from pipeline.aggregates.delta import add_value
from pipeline.aggregates.windows import window_specs
from pipeline.domain.handler import DomainHandler
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from pipeline.settings import Settings

NOW = 1_800_000_000.0
SETTINGS = Settings(bootstrap_servers="unused:9092")
Samples = dict[tuple[str, frozenset], float]


def make_processor(topic: str, handler: DomainHandler) -> PartitionProcessor:
    return PartitionProcessor(
        topic=topic, topic_name=f"cx.{topic}", partition=0, handler=handler, settings=SETTINGS
    )


class DomainRun:
    """A processor fed events, checkpointed (through the wire format) into a view per batch."""

    def __init__(
        self,
        processor: PartitionProcessor,
        metrics: Callable[[View, float], Iterator[Any]],
        encode: Callable[[Any], tuple[bytes, bytes]],
    ) -> None:
        self.proc, self.metrics, self.encode = processor, metrics, encode
        self.view = View(window_specs(SETTINGS.window_seconds))
        self.offset = 0
        self.links: list[tuple[str, float, str]] = []

    def feed(self, events: Iterable[Any], now: float = NOW) -> DomainRun:
        for event in events:
            self.proc.process(self.offset, *self.encode(event), (), now)
            self.offset += 1
        self.proc.tick(now)
        self.links += self.proc.take_links()
        checkpoint = self.proc.take_checkpoint(now)
        if checkpoint is not None:
            self.view.apply(Checkpoint.decode(checkpoint.encode()))
        return self

    def samples(self, now: float = NOW) -> Samples:
        return samples_of(self.metrics(self.view, now))


def samples_of(families: Iterable[Any]) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def named(samples: Samples, name: str) -> dict[frozenset, float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def key(**labels: str) -> frozenset:
    return frozenset(labels.items())


def exposition(
    metrics: Callable[[View, float], Iterator[Any]], view: View, now: float = NOW
) -> str:
    """The text /metrics would serve for these families."""

    class _Collector(Collector):
        def collect(self) -> Iterator[Any]:
            return metrics(view, now)

    registry = CollectorRegistry()
    registry.register(_Collector())
    return generate_latest(registry).decode()


def promtool_check(text: str) -> None:
    """``promtool check metrics`` must find nothing (skipped where promtool is missing)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    problems = (result.stdout + result.stderr).decode().strip()
    assert result.returncode == 0 and not problems, problems


def fold(checkpoints: list[Checkpoint]) -> tuple[dict, dict]:
    """Sum the deltas of checkpoints: (windowed, non-zero totals)."""
    windowed: dict = {}
    totals: dict = defaultdict(int)
    for checkpoint in checkpoints:
        for k, value in checkpoint.delta.windowed.items():
            windowed[k] = add_value(windowed.get(k), value)
        for k, amount in checkpoint.delta.totals.items():
            totals[k] += amount
    return windowed, {k: v for k, v in totals.items() if v}


def as_applied(batches: Iterable[list[Any]], held_types: frozenset[str]) -> list[Any]:
    """The order a handler gets events fed in ``batches`` of ``(event type, id, time, …)``.

    Events of ``held_types`` wait for the flush (pipeline/engine/holdback.py) and come after the
    others of their batch, in event-time order (ties: arrival order).
    """
    applied: list[Any] = []
    for batch in batches:
        applied += [event for event in batch if event[0] not in held_types]
        applied += sorted((event for event in batch if event[0] in held_types), key=lambda e: e[2])
    return applied
