"""What one checkpoint adds to the whole-shop view: windowed observations and running totals.

Stage 1 (ingest) folds every processed record into a :class:`Delta`; the delta travels inside the
partition's checkpoint record, and every worker's view adds it exactly once. Windowed values are
pre-bucketed at the finest granularity (10 s) so a delta stays small however many events it covers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipeline.aggregates.sketch import QuantileSketch

FINE_BUCKET = 10.0
"""Bucket size of observations in a delta; every window granularity is a multiple of it."""

Labels = tuple[str, ...]
Series = tuple[str, Labels]
"""A metric ingredient and its label values, e.g. ``("nps_promoter", ("web",))``."""

Value = int | Decimal | QuantileSketch


def add_value(current: Value | None, value: Value) -> Value:
    """Combine two aggregate values of the same kind; sketches are merged into ``current``."""
    if current is None:
        return value.copy() if isinstance(value, QuantileSketch) else value
    if isinstance(current, QuantileSketch):
        assert isinstance(value, QuantileSketch)
        current.merge(value)
        return current
    return current + value  # type: ignore[operator]


def encode_value(value: Value) -> Any:
    """JSON-safe form: ints stay ints, decimals become strings, sketches become lists."""
    if isinstance(value, QuantileSketch):
        return {"q": value.to_wire()}
    if isinstance(value, Decimal):
        return str(value)
    return value


def decode_value(data: Any) -> Value:
    if isinstance(data, dict):
        return QuantileSketch.from_wire(data["q"])
    if isinstance(data, str):
        return Decimal(data)
    if isinstance(data, float):  # totals such as histogram sums
        return Decimal(repr(data))
    return int(data)


@dataclass
class Delta:
    """Windowed observations ``(series, bucket) -> value`` and totals ``series -> number``."""

    windowed: dict[tuple[Series, float], Value] = field(default_factory=dict)
    totals: defaultdict[Series, int | Decimal] = field(default_factory=lambda: defaultdict(int))

    def observe(self, name: str, labels: Labels, time: float, value: Value = 1) -> None:
        """Add ``value`` to series ``name{labels}`` at event time ``time``."""
        key = ((name, labels), int(time // FINE_BUCKET) * FINE_BUCKET)
        self.windowed[key] = add_value(self.windowed.get(key), value)

    def observe_duration(self, name: str, labels: Labels, time: float, seconds: float) -> None:
        """Add one duration to the quantile sketch of ``name{labels}`` at ``time``."""
        key = ((name, labels), int(time // FINE_BUCKET) * FINE_BUCKET)
        sketch = self.windowed.get(key)
        if sketch is None:
            sketch = self.windowed[key] = QuantileSketch()
        assert isinstance(sketch, QuantileSketch)
        sketch.add(max(0.0, seconds))

    def count(self, name: str, labels: Labels, amount: int | Decimal = 1) -> None:
        """Add to a running total (counters, levels such as the open-ticket backlog)."""
        self.totals[(name, labels)] += amount

    def __bool__(self) -> bool:
        return bool(self.windowed) or any(self.totals.values())

    def to_wire(self) -> dict[str, list[Any]]:
        return {
            "w": [
                [name, list(labels), bucket, encode_value(value)]
                for ((name, labels), bucket), value in self.windowed.items()
            ],
            "t": [
                [name, list(labels), encode_value(amount)]
                for (name, labels), amount in self.totals.items()
                if amount
            ],
        }

    @classmethod
    def from_wire(cls, data: dict[str, list[Any]]) -> Delta:
        delta = cls()
        for name, labels, bucket, value in data.get("w", ()):
            delta.windowed[((name, tuple(labels)), float(bucket))] = decode_value(value)
        for name, labels, amount in data.get("t", ()):
            delta.totals[(name, tuple(labels))] += decode_value(amount)  # type: ignore[operator]
        return delta
