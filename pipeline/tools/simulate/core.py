"""The simulator's clock: pending actions in time order, ids, and the envelope of every event.

The story generators (carts, tickets, surveys) share one :class:`Timeline`, so one behaviour
``Random`` and one id ``Random`` see every draw in the same order as a single generator would:
that order is what makes a seed reproduce its events exactly.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from random import Random
from typing import Any

CHANNELS: tuple[str, ...] = (
    "web",
    "mobile_app",
    "store",
    "marketplace",
    "call_center",
    "chat",
    "email",
    "social",
)

_RAW_PROFILE = (
    0.60, 0.45, 0.35, 0.30, 0.30, 0.35, 0.50, 0.70, 0.90, 1.05, 1.15, 1.20,
    1.25, 1.20, 1.15, 1.15, 1.20, 1.30, 1.45, 1.60, 1.60, 1.50, 1.25, 0.90,
)  # fmt: skip
DIURNAL_PROFILE: tuple[float, ...] = tuple(
    v * len(_RAW_PROFILE) / sum(_RAW_PROFILE) for v in _RAW_PROFILE
)
"""Traffic multiplier at the middle of each local hour (mean exactly 1; linear in between)."""
_PROFILE_PEAK = max(DIURNAL_PROFILE)

_KEY_FIELD = {
    "carts": "cart_id",
    "orders": "order_id",
    "tickets": "ticket_id",
    "surveys": "response_id",
}
_BUCKET_MS = 600_000
_CUSTOMER_RING = 4096  # recent customers kept for returning visits

Action = Callable[[int, Any], None]
"""A pending action: called with its time (epoch ms) and the state it was scheduled with."""
_Pending = tuple[int, int, Action, Any]


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One record to produce: ``topic`` is the short name ("carts", "orders", ...)."""

    topic: str
    key: str
    value: dict[str, object]
    time: float  # occurred_at as epoch seconds (whole milliseconds)


def cumulative(weights: Iterable[float]) -> list[float]:
    """Normalised cumulative weights ending in exactly 1.0, so that
    ``bisect_right(cum, random())`` is always a valid index."""
    running = list(itertools.accumulate(weights))
    return [c / running[-1] for c in running[:-1]] + [1.0]


def cents(value: int) -> str:
    """Money as the contract's decimal string: 1999 -> "19.99"."""
    return f"{value // 100}.{value % 100:02d}"


def timestamp(t: int) -> str:
    """Epoch ms as the contract's UTC timestamp with milliseconds."""
    second, milli = divmod(t, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{milli:03d}Z"


class Timeline:
    """Pending actions in time order; every action emits one event and schedules its follow-ups.

    Actions never schedule earlier than themselves, so :meth:`run_until` pops every action due by
    a limit and an event is never emitted before its ``occurred_at`` has come: a live producer
    and a 24 h historic run share one code path, and the output does not depend on chunking.
    """

    def __init__(self, *, seed: int | None, start: float, utc_offset_hours: float) -> None:
        self.rng = Random(seed)
        """Behaviour: every random choice of the stories."""
        # Ids come from a second generator seeded with the start too: a restart at another time
        # gets fresh ids and is not swallowed by the pipeline's de-duplication.
        self._ids = Random(None if seed is None else f"cx-sim:{seed}:{round(start * 1000)}")
        self._tz = utc_offset_hours
        self._customers: list[str] = []  # ring of recent customers, some come back
        self._customer_pos = 0
        start_ms = math.floor(start * 1000)
        self.start_ms = start_ms
        self.last_ms = start_ms
        # Pending actions (time ms, sequence, action, state). Those before `_horizon` are in the
        # heap; later ones wait in per-`_BUCKET_MS` lists (O(1) to add) and are heapified when
        # their bucket comes, which keeps the heap small: orders wait days, carts seconds.
        self._heap: list[_Pending] = []
        self._buckets: dict[int, list[_Pending]] = {}
        self._horizon = (start_ms // _BUCKET_MS + 1) * _BUCKET_MS
        self._seq = itertools.count()
        self._out: list[SimEvent] = []
        self._ts_day = self._ts_second = -1  # caches for formatting occurred_at
        self._ts_date = self._ts_prefix = ""

    @property
    def pending(self) -> int:
        """Scheduled future actions: the whole state, bounded by entities in flight."""
        return len(self._heap) + sum(map(len, self._buckets.values()))

    def run_until(self, limit: int) -> list[SimEvent]:
        """Run every action due by ``limit`` (epoch ms, after ``last_ms``); their events."""
        out: list[SimEvent] = []
        self._out = out
        pop = heapq.heappop
        # Generation allocates many small objects and creates no garbage cycles, so the cyclic
        # GC would only rescan live state (~25 % of the time); it is paused for the batch.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            while True:
                heap = self._heap
                while heap and heap[0][0] <= limit:
                    t, _, action, state = pop(heap)
                    action(t, state)
                if self._horizon > limit:
                    break
                # Everything before the horizon is done, so the heap is empty: the next bucket
                # becomes the heap.
                heap = self._buckets.pop(self._horizon // _BUCKET_MS, [])
                heapq.heapify(heap)
                self._heap = heap
                self._horizon += _BUCKET_MS
        finally:
            if gc_was_enabled:
                gc.enable()
        self.last_ms = limit
        return out

    def at(self, t: int, action: Action, state: Any) -> None:
        """Schedule ``action(t, state)``."""
        if t < self._horizon:
            heapq.heappush(self._heap, (t, next(self._seq), action, state))
        else:
            bucket = self._buckets.get(t // _BUCKET_MS)
            if bucket is None:
                self._buckets[t // _BUCKET_MS] = [(t, next(self._seq), action, state)]
            else:
                bucket.append((t, next(self._seq), action, state))

    def after(self, t: int, seconds: float, action: Action, state: Any) -> None:
        """Schedule ``action`` ``seconds`` after ``t``."""
        self.at(t + int(seconds * 1000), action, state)

    def diurnal(self, t_ms: float) -> float:
        """Traffic multiplier at ``t_ms`` (local time of day, :data:`DIURNAL_PROFILE`)."""
        x = (t_ms / 3_600_000.0 + self._tz - 0.5) % 24.0
        i = int(x)
        low = DIURNAL_PROFILE[i]
        return low + (DIURNAL_PROFILE[(i + 1) % 24] - low) * (x - i)

    def next_arrival(self, after: float, rate: float, until: float = math.inf) -> float | None:
        """The next arrival (epoch ms) after ``after`` of a Poisson process of ``rate`` per second
        x the diurnal profile (by thinning against its peak); None once it would pass ``until``."""
        rng = self.rng
        peak = _PROFILE_PEAK
        rate_ms = rate * peak / 1000
        clock = after
        while True:
            clock += rng.expovariate(rate_ms)
            if clock > until:
                return None
            if rng.random() * peak < self.diurnal(clock):
                return clock

    def lognormal(self, median: float, sigma: float) -> float:
        """A log-normal draw; gauss() makes normals in pairs: ~3x cheaper than lognormvariate()."""
        return median * math.exp(sigma * self.rng.gauss(0.0, 1.0))

    def new_id(self, prefix: str) -> str:
        """A fresh entity id such as ``cart_<16 hex digits>``."""
        return prefix + self._hex(64)

    def customer(self) -> str:
        """A customer: 30 % a recent one coming back, else a new one."""
        ring = self._customers
        if ring and self.rng.random() < 0.3:
            return ring[int(self.rng.random() * len(ring))]
        customer = self.new_id("cus_")
        if len(ring) < _CUSTOMER_RING:
            ring.append(customer)
        else:
            ring[self._customer_pos] = customer
            self._customer_pos = (self._customer_pos + 1) % _CUSTOMER_RING
        return customer

    def event(
        self,
        t: int,
        topic: str,
        key: str,
        event_type: str,
        source: str,
        channel: str,
        customer: str,
    ) -> dict[str, object]:
        """Append an event with the envelope and key filled in; the caller adds other fields."""
        second, milli = divmod(t, 1000)
        if second != self._ts_second:  # "YYYY-MM-DDTHH:MM:SS." is shared within a second
            self._ts_second = second
            day, second_of_day = divmod(second, 86400)
            if day != self._ts_day:
                self._ts_day = day
                self._ts_date = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
            minute, sec = divmod(second_of_day, 60)
            hour, minute = divmod(minute, 60)
            self._ts_prefix = f"{self._ts_date}{hour:02d}:{minute:02d}:{sec:02d}."
        value: dict[str, object] = {
            "event_id": f"{self._ids.getrandbits(128):032x}",
            "event_type": event_type,
            "occurred_at": f"{self._ts_prefix}{milli:03d}Z",
            "schema_version": 1,
            "source": source,
            "channel": channel,
            "customer_id": customer,
            _KEY_FIELD[topic]: key,
        }
        self._out.append(SimEvent(topic, key, value, t / 1000))
        return value

    def _hex(self, bits: int) -> str:
        return f"{self._ids.getrandbits(bits):0{bits // 4}x}"
