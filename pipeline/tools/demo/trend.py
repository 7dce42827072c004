"""Short memories of the demo loop: sparkline ring buffers and per-second rates of counters.

Both live in the terminal process only: the worker exports levels and cumulative counters, and
Prometheus would keep the history; without it, the demo keeps the last few minutes itself.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float | None], width: int) -> str:
    """The last ``width`` values as bars scaled between their min and max; gaps stay blank."""
    tail = list(values)[-width:] if width > 0 else []
    present = [v for v in tail if v is not None and math.isfinite(v)]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    top = len(BARS) - 1
    return "".join(
        " "
        if v is None or not math.isfinite(v)
        else BARS[round((v - low) / span * top) if span else top // 2]
        for v in tail
    )


class Trends:
    """One ring buffer per headline number: a sample every ``every`` seconds, ``size`` kept.

    Sampled, not recorded per refresh, so that a sparkline of 16 bars spans minutes.
    """

    def __init__(self, size: int = 60, every: float = 10.0) -> None:
        self.size, self.every = size, every
        self._series: dict[str, deque[float | None]] = {}
        self._last: float | None = None

    def record(self, now: float, values: Mapping[str, float | None]) -> None:
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        for key, value in values.items():
            self._series.setdefault(key, deque(maxlen=self.size)).append(value)

    def values(self, key: str) -> list[float | None]:
        return list(self._series.get(key, ()))


class RateMeter:
    """Per-second rates of cumulative counters over the last ``lookback`` seconds."""

    def __init__(self, lookback: float = 10.0) -> None:
        self.lookback = lookback
        self._points: deque[tuple[float, Mapping[str, float]]] = deque()

    def add(self, now: float, totals: Mapping[str, float]) -> None:
        self._points.append((now, dict(totals)))
        while len(self._points) > 2 and now - self._points[1][0] >= self.lookback:
            self._points.popleft()

    def rates(self) -> dict[str, float | None]:
        """None until two points lie apart; a counter that went down (a restart) reads 0."""
        if len(self._points) < 2:
            return {}
        (t0, first), (t1, last) = self._points[0], self._points[-1]
        if t1 <= t0:
            return {}
        return {
            key: max(0.0, value - first.get(key, 0.0)) / (t1 - t0) for key, value in last.items()
        }
