"""Mergeable quantile sketch for durations (DDSketch-style log buckets).

Why a sketch: TTR quantiles must be exact to within 2% relative error over rolling windows, and
windows are built by merging per-bucket aggregates. Keeping every observation would be unbounded;
a log-bucket sketch has a fixed relative error, merges exactly (bin counts add) and stays small.

Pure module: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["QuantileSketch"]

_RANK_EPS = 1e-9  # absorbs float error in q * n (0.28 * 25 = 7.000000000000001 must be rank 7)


class QuantileSketch:
    """Log-bucket quantile sketch with relative accuracy ``alpha``.

    A value ``v >= MIN_VALUE`` goes to bin ``ceil(log_gamma(v))`` with
    ``gamma = (1 + alpha) / (1 - alpha)``; the bin's representative value is within ``alpha``
    relative error of every value in it. Values below ``MIN_VALUE`` (1 ms) count in a dedicated
    zero bin and are reported as ``0.0``. At most ``max_bins`` bins are kept: the lowest bins are
    collapsed into the next one, which only makes the *lowest* quantiles overestimates (with the
    default alpha, 1 ms .. 1 year needs ~1,200 bins, so the cap is a safety net).

    The state is a deterministic function of the multiset of values added (also with collapsing),
    so merging sketches equals sketching the concatenation.
    """

    __slots__ = (
        "_bins",
        "_count",
        "_gamma",
        "_inv_log_gamma",
        "_log_gamma",
        "_zero",
        "alpha",
        "max_bins",
    )

    MIN_VALUE: float = 1e-3

    def __init__(self, alpha: float = 0.01, max_bins: int = 2048) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if max_bins < 1:
            raise ValueError(f"max_bins must be >= 1, got {max_bins!r}")
        self.alpha = float(alpha)
        self.max_bins = int(max_bins)
        self._gamma = (1.0 + self.alpha) / (1.0 - self.alpha)
        self._log_gamma = math.log(self._gamma)
        self._inv_log_gamma = 1.0 / self._log_gamma
        self._bins: dict[int, int] = {}
        self._zero = 0
        self._count = 0

    # --- building -------------------------------------------------------------------------
    def add(self, value: float, count: int = 1) -> None:
        """Record ``value`` (seconds, >= 0) ``count`` times. Hot path: one log, one dict update."""
        if not value >= 0.0 or value == math.inf:  # also rejects NaN
            raise ValueError(f"sketch values must be finite and >= 0, got {value!r}")
        if count <= 0:
            if count == 0:
                return
            raise ValueError(f"count must be >= 0, got {count!r}")
        self._count += count
        if value < self.MIN_VALUE:
            self._zero += count
            return
        key = math.ceil(math.log(value) * self._inv_log_gamma)
        bins = self._bins
        if key in bins:
            bins[key] += count
        else:
            bins[key] = count
            if len(bins) > self.max_bins:
                self._collapse()

    def extend(self, values: Iterable[float]) -> None:
        """Add each value once."""
        for value in values:
            self.add(value)

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s observations to this sketch in place (``other`` is not changed)."""
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into a QuantileSketch")
        if other.alpha != self.alpha:
            raise ValueError(f"cannot merge sketches with alpha {self.alpha} and {other.alpha}")
        if other is self:
            other = other.copy()
        bins = self._bins
        get = bins.get
        for key, cnt in other._bins.items():
            bins[key] = get(key, 0) + cnt
        self._zero += other._zero
        self._count += other._count
        if len(bins) > self.max_bins:
            self._collapse()

    def subtract(self, other: QuantileSketch) -> None:
        """Remove ``other``'s observations in place: the inverse of :meth:`merge`.

        Exact only while this sketch has never collapsed bins (a sliding-window accumulator with
        an unbounded ``max_bins``). Raises ``ValueError``, changing nothing, if ``other`` holds
        anything this sketch does not.
        """
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"cannot subtract {type(other).__name__} from a QuantileSketch")
        if other.alpha != self.alpha:
            raise ValueError(f"cannot subtract sketches with alpha {self.alpha} and {other.alpha}")
        if other is self:
            other = other.copy()
        bins = self._bins
        if other._zero > self._zero or any(
            bins.get(key, 0) < cnt for key, cnt in other._bins.items()
        ):
            raise ValueError("subtracted sketch is not contained in this sketch")
        for key, cnt in other._bins.items():
            left = bins[key] - cnt
            if left:
                bins[key] = left
            else:
                del bins[key]
        self._zero -= other._zero
        self._count -= other._count

    def _collapse(self) -> None:
        """Fold the lowest bins into the lowest kept bin so that ``max_bins`` remain."""
        keys = sorted(self._bins)
        excess = len(keys) - self.max_bins
        target = keys[excess]
        bins = self._bins
        for key in keys[:excess]:
            bins[target] += bins.pop(key)

    def copy(self, max_bins: int | None = None) -> QuantileSketch:
        """An independent sketch with the same state (optionally a new bin cap, applied now)."""
        new = QuantileSketch.__new__(QuantileSketch)
        new.alpha = self.alpha
        new.max_bins = self.max_bins if max_bins is None else int(max_bins)
        if new.max_bins < 1:
            raise ValueError(f"max_bins must be >= 1, got {max_bins!r}")
        new._gamma = self._gamma
        new._log_gamma = self._log_gamma
        new._inv_log_gamma = self._inv_log_gamma
        new._bins = dict(self._bins)
        new._zero = self._zero
        new._count = self._count
        if len(new._bins) > new.max_bins:
            new._collapse()
        return new

    # --- reading --------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Number of observations."""
        return self._count

    @property
    def bin_count(self) -> int:
        """Number of non-zero-value bins held (memory use)."""
        return len(self._bins)

    def _bin_value(self, key: int) -> float:
        # Midpoint (in relative terms) of (gamma^(key-1), gamma^key]: error <= alpha either side.
        return 2.0 * math.exp(key * self._log_gamma) / (self._gamma + 1.0)

    def quantile(self, q: float) -> float | None:
        """Estimate of the value at rank ``ceil(q * n)`` (1-based; ``q = 0`` is the minimum).

        ``None`` when empty. Relative error <= ``alpha`` for values >= ``MIN_VALUE``.
        """
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Several quantiles with one sort of the bins (what a scrape needs)."""
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        n = self._count
        if n == 0:
            return [None] * len(qs)
        ranks = [max(1, math.ceil(q * n - _RANK_EPS)) for q in qs]
        order = sorted(range(len(qs)), key=ranks.__getitem__)
        out: list[float | None] = [None] * len(qs)
        bins = self._bins
        keys = iter(sorted(bins))
        cum = self._zero
        key: int | None = None
        for i in order:
            rank = ranks[i]
            if rank <= self._zero:
                out[i] = 0.0
                continue
            while cum < rank:
                key = next(keys)
                cum += bins[key]
            assert key is not None
            out[i] = self._bin_value(key)
        return out

    # --- identity and wire ----------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (
            self.alpha == other.alpha
            and self._zero == other._zero
            and self._count == other._count
            and self._bins == other._bins
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(alpha={self.alpha}, count={self._count}, zero={self._zero}, "
            f"bins={len(self._bins)})"
        )

    def to_wire(self) -> list[Any]:
        """JSON-safe ``[alpha, zero_count, [key, count, key, count, ...]]`` (keys ascending)."""
        flat: list[int] = []
        for key in sorted(self._bins):
            flat.append(key)
            flat.append(self._bins[key])
        return [self.alpha, self._zero, flat]

    @classmethod
    def from_wire(cls, data: Sequence[Any], max_bins: int = 2048) -> QuantileSketch:
        """Inverse of :meth:`to_wire`; rejects malformed input rather than guessing."""
        try:
            alpha, zero, flat = data
        except (TypeError, ValueError):
            raise ValueError(f"bad sketch wire data: {data!r}") from None
        if (
            type(alpha) not in (int, float)
            or type(zero) is not int
            or zero < 0
            or not isinstance(flat, list | tuple)
            or len(flat) % 2
        ):
            raise ValueError(f"bad sketch wire data: {data!r}")
        sketch = cls(alpha=alpha, max_bins=max_bins)
        bins = sketch._bins
        total = zero
        for i in range(0, len(flat), 2):
            key, cnt = flat[i], flat[i + 1]
            if type(key) is not int or type(cnt) is not int or cnt <= 0 or key in bins:
                raise ValueError(f"bad sketch bin {key!r}: {cnt!r}")
            bins[key] = cnt
            total += cnt
        sketch._zero = zero
        sketch._count = total
        if len(bins) > sketch.max_bins:
            sketch._collapse()
        return sketch
