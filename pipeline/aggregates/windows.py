"""Rolling event-time window aggregates over time buckets.

A window of length W at time T covers events with ``T - W < t <= T`` (CONTRACT.md, "Windows").
Events are kept in fixed-size buckets per series; a query folds every bucket whose end is
``> T - W`` and whose start is ``<= T``, so bucketing may widen the lower edge by at most one
bucket and never cuts an event off. Upstream holds back events with ``t > T``, so the bucket
holding T never contains the future.

Bucket sizes: 10 s for windows up to 15 minutes, 60 s above, one ring per distinct size; each ring
only keeps the history its longest window needs.

Pure module: no I/O, no clock -- ``now`` is always passed in.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pipeline.aggregates.sketch import QuantileSketch

__all__ = [
    "Value",
    "WindowSpec",
    "WindowStore",
    "bucket_end",
    "bucket_start",
    "format_window",
    "merge_value",
    "window_specs",
]

#: An aggregate held in a bucket: a count, an exact money sum, or a quantile sketch.
Value = int | float | Decimal | QuantileSketch

SHORT_BUCKET = 10.0
LONG_BUCKET = 60.0
SHORT_WINDOW_MAX = 900.0


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One rolling window: its label, its length and the bucket size it is computed from."""

    name: str
    length: float
    bucket: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.length) and self.length > 0):
            raise ValueError(f"window length must be > 0, got {self.length!r}")
        if not (math.isfinite(self.bucket) and self.bucket > 0):
            raise ValueError(f"bucket size must be > 0, got {self.bucket!r}")


def format_window(seconds: float) -> str:
    """Prometheus ``window`` label: 300 -> ``5m``, 3600 -> ``1h``, 86400 -> ``24h`` (the
    contract's label), 604800 -> ``7d`` (as configured, not ``168h``), 90 -> ``90s``."""
    if seconds == int(seconds):
        whole = int(seconds)
        if whole > 86400 and whole % 86400 == 0:
            return f"{whole // 86400}d"
        if whole % 3600 == 0:
            return f"{whole // 3600}h"
        if whole % 60 == 0:
            return f"{whole // 60}m"
        return f"{whole}s"
    return f"{seconds:g}s"


def window_specs(lengths: Iterable[float]) -> tuple[WindowSpec, ...]:
    """Specs for window lengths in seconds, in the given order, duplicates dropped."""
    specs: dict[float, WindowSpec] = {}
    for length in lengths:
        length = float(length)
        if length not in specs:
            bucket = SHORT_BUCKET if length <= SHORT_WINDOW_MAX else LONG_BUCKET
            specs[length] = WindowSpec(format_window(length), length, bucket)
    return tuple(specs.values())


def bucket_start(t: float, size: float) -> float:
    """Start of the bucket holding ``t``: the largest multiple of ``size`` that is ``<= t``.

    Python's float ``//`` is an exact floor, so a 10 s bucket start maps to the 60 s bucket that
    contains it (no ``round``-style drift).
    """
    return int(t // size) * size


def bucket_end(t: float, size: float) -> float:
    """Exclusive end of the bucket holding ``t``."""
    return (int(t // size) + 1) * size


def merge_value(acc: Value, value: Value) -> Value:
    """Combine two aggregates: numbers add; a sketch ``acc`` is merged IN PLACE and returned.

    Callers must own ``acc`` when it is a sketch (copy first otherwise). ``value`` is never
    changed. Mixing a sketch with a number raises ``TypeError``.
    """
    if isinstance(acc, QuantileSketch):
        if not isinstance(value, QuantileSketch):
            raise TypeError(f"cannot merge {type(value).__name__} into a QuantileSketch")
        acc.merge(value)
        return acc
    if isinstance(value, QuantileSketch):
        raise TypeError(f"cannot merge a QuantileSketch into {type(acc).__name__}")
    return acc + value


def _owned(value: Value) -> Value:
    """A value the store may mutate later (sketches are copied; numbers are immutable)."""
    if isinstance(value, QuantileSketch):
        return value.copy()
    if not isinstance(value, int | float | Decimal):
        raise TypeError(f"unsupported aggregate type {type(value).__name__}")
    return value


def _check_compatible(first: Value, value: Value) -> None:
    """Reject a value that could not be merged with the series' others, before any change."""
    if isinstance(first, QuantileSketch):
        if not isinstance(value, QuantileSketch):
            raise TypeError(f"cannot add {type(value).__name__} to a sketch series")
        if value.alpha != first.alpha:
            raise ValueError(f"sketch alpha {value.alpha} differs from the series' {first.alpha}")
    elif isinstance(value, QuantileSketch):
        raise TypeError(f"cannot add a QuantileSketch to a {type(first).__name__} series")
    elif isinstance(first, Decimal) is not isinstance(value, Decimal) and (
        isinstance(first, float) or isinstance(value, float)
    ):
        raise TypeError(f"cannot mix {type(first).__name__} and {type(value).__name__} sums")


_UNBOUNDED_BINS = 1 << 62  # a sliding accumulator must never collapse, or subtract is inexact


class _Sliding:
    """Running merge of a sketch series' buckets ``lo..hi`` (bucket indices, inclusive).

    Why: folding 1,440 per-minute sketches costs milliseconds, but between two scrapes a window
    moves by a bucket or two. Bin counts add and subtract exactly, so the accumulator is moved
    along instead of rebuilt. It never collapses bins; the cap is applied to the returned copy,
    which gives the same state as a direct fold (collapsing is order-independent).
    """

    __slots__ = ("acc", "hi", "lo", "nbuckets")

    def __init__(self, lo: int, hi: int, acc: QuantileSketch) -> None:
        self.lo = lo
        self.hi = hi
        self.acc = acc
        self.nbuckets = 0  # buckets in lo..hi; 0 means "no data" (None), not an empty sketch


class _Buckets:
    """One series' buckets in one ring: ascending bucket indices with parallel values.

    Sorted parallel lists make a window query two bisections plus a fold over exactly the
    buckets that hold data; in-order arrivals are an append. Sketch series also keep one
    :class:`_Sliding` accumulator per window length.
    """

    __slots__ = ("keys", "sliding", "values")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.values: list[Value] = []
        self.sliding: dict[float, _Sliding] = {}

    def put(self, key: int, value: Value) -> None:
        """Merge ``value`` into bucket ``key`` and into every accumulator covering it."""
        keys = self.keys
        values = self.values
        if keys:
            _check_compatible(values[0], value)
        new = True
        if not keys or key > keys[-1]:
            i = len(keys)
            keys.append(key)
            values.append(_owned(value))
        elif key == keys[-1]:
            i = len(keys) - 1
            new = False
            values[i] = merge_value(values[i], value)
        else:
            i = bisect_left(keys, key)
            if keys[i] == key:
                new = False
                values[i] = merge_value(values[i], value)
            else:
                keys.insert(i, key)
                values.insert(i, _owned(value))
        if self.sliding:
            stored = values[i]
            if not new and stored.bin_count >= stored.max_bins:  # type: ignore[union-attr]
                # The bucket may have collapsed bins: its state is no longer old + value.
                self.sliding.clear()
                return
            for sliding in self.sliding.values():
                if sliding.lo <= key <= sliding.hi:
                    sliding.acc.merge(value)  # type: ignore[arg-type]
                    sliding.nbuckets += new

    def add_up(self, lo: int, hi: int) -> Value | None:
        """Sum of a number series' buckets with indices ``lo..hi``, or ``None`` if there are none."""
        keys = self.keys
        i = bisect_left(keys, lo)
        j = bisect_right(keys, hi, i)
        if i >= j:
            return None
        values = self.values
        return sum(values[i + 1 : j], values[i])  # type: ignore[arg-type]

    def _apply(self, sliding: _Sliding, lo: int, hi: int, sign: int) -> None:
        """Merge (sign 1) or subtract (sign -1) the buckets ``lo..hi`` into the accumulator."""
        keys = self.keys
        i = bisect_left(keys, lo)
        j = bisect_right(keys, hi, i)
        values = self.values
        op = sliding.acc.merge if sign > 0 else sliding.acc.subtract
        for k in range(i, j):
            op(values[k])  # type: ignore[arg-type]
        sliding.nbuckets += sign * (j - i)

    def window(self, length: float, lo: int, hi: int) -> Value | None:
        """Aggregate over bucket indices ``lo..hi``, using the accumulator for sketches."""
        keys = self.keys
        if not keys or not isinstance(self.values[0], QuantileSketch):
            return self.add_up(lo, hi)
        sliding = self.sliding.get(length)
        if sliding is None or lo < sliding.lo or hi < sliding.hi or lo > sliding.hi:
            # First query, or a jump back in time or past the old window: start afresh.
            first = self.values[0]
            assert isinstance(first, QuantileSketch)
            sliding = _Sliding(lo, hi, QuantileSketch(first.alpha, _UNBOUNDED_BINS))
            self._apply(sliding, lo, hi, 1)
            self.sliding[length] = sliding
        else:
            if lo > sliding.lo:
                self._apply(sliding, sliding.lo, lo - 1, -1)
            if hi > sliding.hi:
                self._apply(sliding, sliding.hi + 1, hi, 1)
            sliding.lo = lo
            sliding.hi = hi
        if sliding.nbuckets == 0:
            return None
        first = self.values[0]
        return sliding.acc.copy(max_bins=first.max_bins)  # type: ignore[union-attr]

    def drop_before(self, first_kept: int) -> int:
        """Forget buckets with index < ``first_kept``, moving accumulators past them first."""
        keys = self.keys
        if not keys or keys[0] >= first_kept:
            return 0
        for length, sliding in list(self.sliding.items()):
            if sliding.hi < first_kept:
                del self.sliding[length]
            elif sliding.lo < first_kept:
                self._apply(sliding, sliding.lo, first_kept - 1, -1)
                sliding.lo = first_kept
        cut = bisect_left(keys, first_kept)
        del keys[:cut]
        del self.values[:cut]
        return cut


class _Ring:
    """All series' buckets of one bucket size, and how much history they must keep."""

    __slots__ = ("horizon", "series", "size")

    def __init__(self, size: float, horizon: float) -> None:
        self.size = size
        self.horizon = horizon  # longest window served by this ring
        self.series: dict[Hashable, _Buckets] = {}


class WindowStore:
    """Rolling aggregates for many series at several window lengths.

    A series key is any hashable. Values of one series must all be numbers or all sketches (of
    one alpha). ``add`` feeds every ring; ``total`` reads the ring of the spec's bucket size.
    Number windows are summed directly (microseconds); sketch windows are kept as sliding
    accumulators, so a query costs the buckets that entered or left since the last one.
    """

    __slots__ = ("_by_size", "_rings", "specs")

    def __init__(self, specs: Sequence[WindowSpec]) -> None:
        if not specs:
            raise ValueError("WindowStore needs at least one WindowSpec")
        self.specs: tuple[WindowSpec, ...] = tuple(specs)
        self._by_size: dict[float, _Ring] = {}
        for spec in self.specs:
            ring = self._by_size.get(spec.bucket)
            if ring is None:
                self._by_size[spec.bucket] = _Ring(spec.bucket, spec.length)
            else:
                ring.horizon = max(ring.horizon, spec.length)
        self._rings = tuple(self._by_size.values())

    def add(self, series: Hashable, t: float, value: Value) -> None:
        """Add ``value`` into the bucket holding event time ``t`` at every bucket size.

        A sketch ``value`` is copied, never kept or mutated.
        """
        if not math.isfinite(t):
            raise ValueError(f"event time must be finite, got {t!r}")
        for ring in self._rings:
            buckets = ring.series.get(series)
            if buckets is None:
                buckets = ring.series[series] = _Buckets()
            buckets.put(int(t // ring.size), value)

    def _ring(self, spec: WindowSpec) -> _Ring:
        if spec not in self.specs:
            # A foreign spec could ask for history that expire() has already dropped.
            raise ValueError(f"{spec!r} is not one of this store's specs")
        return self._by_size[spec.bucket]

    def total(self, series: Hashable, spec: WindowSpec, now: float) -> Value | None:
        """Aggregate of ``series`` over window ``spec`` ending at ``now``; ``None`` if no data.

        Covers the buckets from the one holding ``now - length`` to the one holding ``now``.
        Returns a fresh value (a sketch result is a copy the caller may mutate).
        """
        ring = self._ring(spec)
        buckets = ring.series.get(series)
        if buckets is None:
            return None
        size = ring.size
        return buckets.window(spec.length, int((now - spec.length) // size), int(now // size))

    def series(self) -> Iterator[Hashable]:
        """Every series with at least one bucket left, each once."""
        if len(self._rings) == 1:
            return iter(list(self._rings[0].series))
        seen: dict[Hashable, None] = {}
        for ring in self._rings:
            seen.update(dict.fromkeys(ring.series))
        return iter(list(seen))

    def dump(self) -> Iterator[tuple[float, Hashable, list[int], list[Value]]]:
        """Every ring's buckets as ``(bucket size, series, indices, values)``, for snapshots."""
        for ring in self._rings:
            for series, buckets in ring.series.items():
                yield ring.size, series, buckets.keys, buckets.values

    def load(self, size: float, series: Hashable, keys: list[int], values: list[Value]) -> None:
        """Put back one series' buckets of one ring, as :meth:`dump` gave them."""
        ring = self._by_size.get(size)
        if ring is None:
            raise ValueError(f"no ring of bucket size {size!r} in this store")
        if len(keys) != len(values) or keys != sorted(set(keys)):
            raise ValueError("bucket indices must be strictly ascending, one per value")
        buckets = _Buckets()
        buckets.keys = list(keys)
        buckets.values = [_owned(value) for value in values]
        ring.series[series] = buckets

    def bucket_count(self) -> int:
        """Buckets held across all rings and series (memory gauge)."""
        return sum(len(b.keys) for ring in self._rings for b in ring.series.values())

    def expire(self, now: float) -> int:
        """Drop buckets no query at time ``>= now`` can reach; return how many were dropped.

        A ring keeps buckets from the one holding ``now - longest window of that ring`` on (i.e.
        it drops buckets ending at or before ``now - longest window``). Series left without
        buckets are forgotten. Queries for times before ``now`` are not supported afterwards.
        """
        dropped = 0
        for ring in self._rings:
            first_kept = int((now - ring.horizon) // ring.size)
            empty: list[Hashable] = []
            for key, buckets in ring.series.items():
                dropped += buckets.drop_before(first_kept)
                if not buckets.keys:
                    empty.append(key)
            for key in empty:
                del ring.series[key]
        return dropped
