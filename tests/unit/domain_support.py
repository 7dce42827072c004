"""Drive one domain handler through the real PartitionProcessor into a View, without Kafka."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from pipeline.aggregates.delta import add_value
from pipeline.aggregates.windows import window_specs
from pipeline.domain.handler import DomainHandler
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.links import encode_link
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from pipeline.settings import Settings
from pipeline.worker.handlers import make_handler

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


TOPIC_OF_EVENT = {"cart": "carts", "checkout": "carts", "order": "orders", "survey": "surveys"}
KEY_OF_TOPIC = {"carts": "cart_id", "orders": "order_id", "surveys": "response_id"}


def make_handlers() -> dict[str, DomainHandler]:
    """The signal-emitting handlers as the worker configures them (default settings)."""
    return {topic: make_handler(topic, SETTINGS) for topic in KEY_OF_TOPIC}


class SignalShop:
    """Carts, orders and surveys partitions with the link between them, as one worker runs them.

    Records are kept in per-topic logs (Kafka stand-ins) and each flush "sends" links and
    signals before storing the checkpoint, like ``Delivery.cut``. :meth:`crash` drops every
    processor and rebuilds it from the stored checkpoints, then replays the logs from there,
    so what a worker decided but had not checkpointed is decided again.
    """

    def __init__(self) -> None:
        self.logs: dict[str, list[tuple[bytes, bytes]]] = {topic: [] for topic in KEY_OF_TOPIC}
        self.link_log: list[tuple[bytes, bytes]] = []
        self.checkpoints: dict[str, list[bytes]] = {topic: [] for topic in KEY_OF_TOPIC}
        self.sent: list[dict[str, Any]] = []
        """Every signal sent, in order, duplicates included."""
        self.crashes = 0
        self.procs = self._fresh()

    @staticmethod
    def _fresh() -> dict[str, PartitionProcessor]:
        return {topic: make_processor(topic, h) for topic, h in make_handlers().items()}

    def arrive(self, event: dict[str, Any]) -> None:
        topic = TOPIC_OF_EVENT[event["event_type"].split(".")[0]]
        key = str(event[KEY_OF_TOPIC[topic]]).encode()
        self.logs[topic].append((key, orjson.dumps(event)))

    def step(self, now: float, crash_after: str | None = None) -> None:
        """Process what arrived, fire timers and flush (orders first: links reach carts).

        ``crash_after`` names the topic whose links and signals are sent but whose checkpoint
        never is: the worker dies right there.
        """
        for topic in ("orders", "surveys", "carts"):
            proc = self.procs[topic]
            for offset in range(proc.position, len(self.logs[topic])):
                proc.process(offset, *self.logs[topic][offset], (), now)
            if topic == "carts":
                for offset in range(proc.link_offset or 0, len(self.link_log)):
                    proc.process_link(offset, *self.link_log[offset], now)
            proc.tick(now)
            for cart_id, time, order_id in proc.take_links():
                self.link_log.append((cart_id.encode(), encode_link(time, order_id)))
            self.sent += [orjson.loads(orjson.dumps(s)) for _, s in proc.take_signals()]
            checkpoint = proc.take_checkpoint(now)
            if topic == crash_after:
                self.crash(now)
                return
            if checkpoint is not None:
                self.checkpoints[topic].append(checkpoint.encode())

    def crash(self, now: float) -> None:
        """SIGKILL: everything not checkpointed is gone; restart from the checkpoints."""
        self.crashes += 1
        self.procs = self._fresh()
        for topic, proc in self.procs.items():
            proc.restore([Checkpoint.decode(c) for c in self.checkpoints[topic]], now)


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
