"""A deterministic, realistic shop-traffic simulator and a thin Kafka producer for it.

It drives the demo dashboards and the benchmark mixes, so the traffic has the shapes real shops
show: a day/night cycle, channel mix, a checkout funnel that leaks at every step (more on mobile),
abandoned carts that are sometimes recovered, orders shipped hours and delivered days later (~90 %
on time), support tickets with log-normal reply and resolution times and reopens, and surveys
whose scores follow the experience (late delivery, slow resolution) they rate.

Design:

* Pure generation. :class:`ShopSimulator` keeps one time-ordered heap of *pending actions*; every
  action emits one event at its time and schedules its follow-ups (never earlier than itself).
  ``events_until(t)`` pops every action due by ``t``, so an event is never emitted before its
  ``occurred_at`` has come: a live producer and a 24 h historic run share one code path, and the
  output does not depend on how time is chunked.
* Deterministic: one ``random.Random(seed)`` drives behaviour and a second one, seeded with
  ``(seed, start)``, draws ids, so the same seed and start give the same events (a restart at
  another time gets fresh ids and is not swallowed by the pipeline's de-duplication).
* Memory is bounded by the entities in flight (open carts, tickets, undelivered orders, pending
  surveys), each one heap entry; nothing accumulates over time.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import inspect
import itertools
import math
import re
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from random import Random
from statistics import NormalDist
from typing import Any, Protocol

import orjson

from pipeline.settings import parse_duration

__all__ = [
    "CHANNELS",
    "DEFAULT_CHANNEL_WEIGHTS",
    "DIURNAL_PROFILE",
    "ShopSimulator",
    "SimEvent",
    "TtrSpike",
    "parse_ttr_spike",
    "produce",
    "run_live",
]

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
DEFAULT_CHANNEL_WEIGHTS: Mapping[str, float] = {
    "web": 0.45,
    "mobile_app": 0.30,
    "store": 0.05,
    "marketplace": 0.08,
    "call_center": 0.03,
    "chat": 0.04,
    "email": 0.03,
    "social": 0.02,
}
"""Channel of a shopping session (a cart's first event)."""

TICKET_CHANNEL_WEIGHTS: Mapping[str, float] = {
    "chat": 0.34,
    "email": 0.25,
    "call_center": 0.18,
    "web": 0.13,
    "mobile_app": 0.06,
    "social": 0.04,
}
"""Support contacts come mostly through the service channels."""

_RAW_PROFILE = (
    0.60, 0.45, 0.35, 0.30, 0.30, 0.35, 0.50, 0.70, 0.90, 1.05, 1.15, 1.20,
    1.25, 1.20, 1.15, 1.15, 1.20, 1.30, 1.45, 1.60, 1.60, 1.50, 1.25, 0.90,
)  # fmt: skip
DIURNAL_PROFILE: tuple[float, ...] = tuple(
    v * len(_RAW_PROFILE) / sum(_RAW_PROFILE) for v in _RAW_PROFILE
)
"""Traffic multiplier at the middle of each local hour (mean exactly 1; linear in between)."""

# --- carts -------------------------------------------------------------------------------------
_ITEM_COUNTS = (1, 2, 3, 4, 5)
_ITEM_COUNT_WEIGHTS = (0.34, 0.26, 0.18, 0.12, 0.10)
_QUANTITY_WEIGHTS = (0.80, 0.13, 0.04, 0.02, 0.01)  # quantities 1..5
_P_REMOVE = 0.25  # sessions with >= 2 items that take one out again
_CURRENCIES = ("EUR", "USD", "GBP")
_CURRENCY_WEIGHTS = (0.82, 0.11, 0.07)
_CATALOG_SIZE = 1500
# channel: (P(start checkout), P(shipping | started), P(payment | shipping),
#           P(review | payment), P(order | review)); mobile leaks most, the store least.
_FUNNEL: Mapping[str, tuple[float, float, float, float, float]] = {
    "web": (0.45, 0.88, 0.90, 0.95, 0.93),
    "mobile_app": (0.42, 0.80, 0.84, 0.93, 0.92),
    "store": (0.70, 0.96, 0.97, 0.98, 0.99),
    "marketplace": (0.55, 0.92, 0.94, 0.97, 0.96),
    "call_center": (0.60, 0.93, 0.92, 0.97, 0.97),
    "chat": (0.45, 0.88, 0.90, 0.95, 0.93),
    "email": (0.40, 0.87, 0.90, 0.95, 0.93),
    "social": (0.30, 0.82, 0.85, 0.93, 0.90),
}
_P_RECOVER = 0.05  # abandoned carts later bought after all (e.g. after a reminder e-mail)
_ABANDON_AFTER = 1800.0 + 120.0  # contract default timeout + allowed lateness
_P_ORDER_SKEW = 0.12  # orders stamped slightly before the last cart event (independent clocks)
_ITEM_SOURCE: Mapping[str, str] = {
    "web": "storefront",
    "mobile_app": "mobile-app",
    "store": "pos",
    "marketplace": "marketplace-bridge",
    "call_center": "call-center",
    "chat": "storefront",
    "email": "storefront",
    "social": "storefront",
}
_KEY_FIELD = {
    "carts": "cart_id",
    "orders": "order_id",
    "tickets": "ticket_id",
    "surveys": "response_id",
}
_ADD, _REMOVE, _CHECKOUT, _SHIPPING, _PAYMENT, _REVIEW = range(6)
_STEP_NAME = {_SHIPPING: "shipping", _PAYMENT: "payment", _REVIEW: "review"}
# median seconds before a cart action of this kind (log-normal, sigma 0.8)
_GAP_MEDIAN = {
    _ADD: 35.0,
    _REMOVE: 25.0,
    _CHECKOUT: 60.0,
    _SHIPPING: 45.0,
    _PAYMENT: 40.0,
    _REVIEW: 25.0,
}

# --- orders ------------------------------------------------------------------------------------
_P_CANCEL = 0.01  # refunded before shipping (and never shipped)
_P_RETURN = 0.02  # refunded some days after delivery; ~3 % refunds overall
_P_ON_TIME = 0.90
_PROMISE_DAYS = (1, 2, 3, 4)
_PROMISE_WEIGHTS = (0.20, 0.40, 0.25, 0.15)
_P_LATE_TICKET = 0.30  # "where is my order?" tickets for late deliveries
_P_CHECKOUT_SURVEY = 0.06
_P_DELIVERY_SURVEY = 0.15

# --- tickets -----------------------------------------------------------------------------------
_TICKETS_PER_SESSION = 0.07  # independent support contacts per shopping session
_PRIORITIES = ("low", "normal", "high", "urgent")
_PRIORITY_WEIGHTS = (0.25, 0.50, 0.18, 0.07)
_PRIORITY_TTR = (1.4, 1.0, 0.6, 0.35)  # relative TTR, renormalised to keep the overall median
_CATEGORIES = ("delivery", "payment", "returns", "product", "account", "other")
_CATEGORY_WEIGHTS = (0.28, 0.14, 0.20, 0.16, 0.10, 0.12)
_P_NO_CATEGORY = 0.05
_REPLY_MEDIAN = {  # seconds to the first agent reply, by channel
    "chat": 120.0,
    "call_center": 60.0,
    "email": 3 * 3600.0,
    "web": 3600.0,
    "mobile_app": 3600.0,
    "social": 1200.0,
    "store": 1800.0,
    "marketplace": 2 * 3600.0,
}
_P_REPLY = 0.94  # the rest are resolved without an agent reply (self-service)
_TTR_SIGMA = 1.0  # p90 = 3.6 x median
_P_REOPEN = 0.08
_P_SUPPORT_SURVEY = 0.30

# --- surveys -----------------------------------------------------------------------------------
_SURVEY_KINDS = ("nps", "csat", "ces")
_SURVEY_KIND_WEIGHTS = (0.50, 0.30, 0.20)
# Score distributions of a neutral experience, worst score first. A response draws a latent
# satisfaction z ~ N(shift, 1) and reads off the score at z's quantile, so a good/bad experience
# (positive/negative shift) moves the whole distribution.
_SCORE_DISTRIBUTIONS: Mapping[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "nps": (
        tuple(range(11)),
        (0.015, 0.01, 0.015, 0.02, 0.02, 0.05, 0.08, 0.12, 0.18, 0.20, 0.29),
    ),
    "csat": ((1, 2, 3, 4, 5), (0.05, 0.06, 0.10, 0.33, 0.46)),
    "ces": ((7, 6, 5, 4, 3, 2, 1), (0.03, 0.04, 0.07, 0.11, 0.18, 0.27, 0.30)),  # 1 = effortless
}
_P_COMMENT = 0.08
_COMMENTS = (
    ("Very disappointed.", "Took far too long.", "Nobody helped me.", "Never again."),
    ("OK.", "Fine, nothing special.", "Could be faster.", "As expected."),
    ("Great service!", "Super fast, thanks.", "Very helpful agent.", "Love it."),
)


def _cumulative(weights: Iterable[float]) -> list[float]:
    """Normalised cumulative weights ending in exactly 1.0, so that
    ``bisect_right(cum, random())`` is always a valid index."""
    cumulative = list(itertools.accumulate(weights))
    return [c / cumulative[-1] for c in cumulative[:-1]] + [1.0]


def _score_thresholds(probabilities: Sequence[float]) -> list[float]:
    """Latent-z cut points so that z ~ N(0, 1) yields the given score distribution."""
    return [NormalDist().inv_cdf(c) for c in _cumulative(probabilities)[:-1]]


_THRESHOLDS = {kind: _score_thresholds(dist[1]) for kind, dist in _SCORE_DISTRIBUTIONS.items()}


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One record to produce: ``topic`` is the short name ("carts", "orders", ...)."""

    topic: str
    key: str
    value: dict[str, object]
    time: float  # occurred_at as epoch seconds (whole milliseconds)


@dataclass(frozen=True, slots=True)
class TtrSpike:
    """Tickets resolved in ``[start, start + duration]`` took ``factor`` x their normal TTR.

    How (``ShopSimulator._plan_spike_tickets``): the tickets that resolve during the spike are
    planned when the simulator is built. Their resolution times follow the normal ticket rate,
    each gets a normal TTR draw d and is opened ``factor * d`` before its resolution, so the TTR
    of *every* first resolution inside the spike is factor x a normal draw: the p90 (any
    quantile) of any window inside the spike is ~factor x the normal one, while the resolution
    rate stays normal. Normal tickets that would have resolved inside the spike are held and
    resolved in a backlog drain right after it (within min(duration, 30 min)), so the spike is
    followed by a burst of slightly-late resolutions, as after a real outage; slow TTRs also
    lower the support surveys' scores. Before the spike nothing changes except that the slow
    tickets are already open (the backlog grows). A slow ticket would have to open up to
    ``factor * TTR`` before the spike; those before the simulator's ``start`` are dropped, so
    the full effect needs that much simulated history (``run_live(history=...)`` or a smaller
    ``ttr_median``); without history the spike resolves only young tickets and barely shows.
    """

    start: float
    duration: float
    factor: float = 8.0

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"TTR spike duration must be positive, got {self.duration!r}")
        if not self.factor > 1:
            raise ValueError(f"TTR spike factor must be greater than 1, got {self.factor!r}")

    @property
    def end(self) -> float:
        return self.start + self.duration


_SPIKE = re.compile(
    r"^\s*(?:\+(?P<offset>[^,]+),)?(?P<duration>[^:,]+)(?::\s*(?P<factor>[0-9]*\.?[0-9]+)\s*[xX]?)?\s*$"
)


def parse_ttr_spike(text: str, now: float) -> TtrSpike:
    """Parse the CLI form ``[+OFFSET,]DURATION[:FACTOR[x]]`` into a spike starting at ``now``.

    OFFSET and DURATION are durations (``90s``, ``10m``, ``1.5h``, bare numbers are seconds);
    FACTOR defaults to 8. ``"10m"`` = now for 10 min, 8x; ``"10m:5x"`` = 5x;
    ``"+2m,10m:5x"`` = starts in 2 min. Anything else raises ``ValueError``.
    """
    match = _SPIKE.match(text)
    if match is None:
        raise ValueError(
            f"not a TTR spike: {text!r} (use [+OFFSET,]DURATION[:FACTORx], e.g. 10m, 10m:5x, +2m,10m:5x)"
        )
    try:
        offset = parse_duration(match["offset"].strip()) if match["offset"] else 0.0
        duration = parse_duration(match["duration"].strip())
    except ValueError as exc:
        raise ValueError(f"not a TTR spike: {text!r}: {exc}") from None
    factor = float(match["factor"]) if match["factor"] else 8.0
    if offset < 0 or not math.isfinite(offset):
        raise ValueError(f"not a TTR spike: {text!r}: offset must be >= 0")
    if duration <= 0 or not math.isfinite(duration):
        raise ValueError(f"not a TTR spike: {text!r}: duration must be > 0")
    if factor <= 1 or not math.isfinite(factor):
        raise ValueError(f"not a TTR spike: {text!r}: factor must be > 1")
    return TtrSpike(start=now + offset, duration=duration, factor=factor)


class _Cart:
    __slots__ = ("cart_id", "channel", "currency", "customer", "i", "lines", "placed", "plan")

    def __init__(
        self,
        cart_id: str,
        customer: str,
        channel: str,
        currency: str,
        plan: list[int],
        placed: bool,
    ) -> None:
        self.cart_id = cart_id
        self.customer = customer
        self.channel = channel
        self.currency = currency
        self.plan = plan
        self.placed = placed
        self.i = 0
        self.lines: dict[str, list[int]] = {}  # product_id -> [quantity, unit price in cents]


class _Order:
    __slots__ = ("channel", "currency", "customer", "order_id", "total")

    def __init__(
        self, order_id: str, customer: str, channel: str, currency: str, total: int
    ) -> None:
        self.order_id = order_id
        self.customer = customer
        self.channel = channel
        self.currency = currency
        self.total = total  # cents


class _Ticket:
    __slots__ = ("channel", "customer", "opened", "reopened", "replied", "ticket_id")

    def __init__(self, ticket_id: str, customer: str, channel: str, opened: int) -> None:
        self.ticket_id = ticket_id
        self.customer = customer
        self.channel = channel
        self.opened = opened  # ms
        self.replied = False
        self.reopened = False


_Action = tuple[int, int, Callable[[int, Any], None], Any]
_BUCKET_MS = 600_000


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


class ShopSimulator:
    """Generates a shop's event stream forward in time; see the module docstring.

    ``rate`` is the average number of events per second over a day (the day/night profile moves
    the instantaneous rate between ~0.3x and ~1.6x). ``utc_offset_hours`` places the shop's local
    day; ``ttr_median`` is the median time to resolution of a ticket in seconds.
    """

    def __init__(
        self,
        *,
        rate: float,
        seed: int | None = None,
        start: float,
        ttr_spike: TtrSpike | None = None,
        channel_weights: Mapping[str, float] | None = None,
        ttr_median: float = 7200.0,
        utc_offset_hours: float = 0.0,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of events per second, got {rate!r}")
        if not ttr_median > 0:
            raise ValueError(f"ttr_median must be positive, got {ttr_median!r}")
        weights = dict(DEFAULT_CHANNEL_WEIGHTS if channel_weights is None else channel_weights)
        unknown = set(weights) - set(CHANNELS)
        if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(
                f"channel_weights need non-negative weights of known channels {CHANNELS}, "
                f"with a positive sum; got {weights!r}"
            )
        self.rate = rate
        self.ttr_spike = ttr_spike
        self.ttr_median = ttr_median
        self._rng = Random(seed)
        self._ids = Random(None if seed is None else f"cx-sim:{seed}:{round(start * 1000)}")
        self._tz = utc_offset_hours
        self._channels = [c for c in CHANNELS if weights.get(c, 0) > 0]
        self._channel_weights = {c: weights[c] / sum(weights.values()) for c in self._channels}
        self._channel_cum = _cumulative(self._channel_weights[c] for c in self._channels)
        self._ticket_channels = list(TICKET_CHANNEL_WEIGHTS)
        self._ticket_channel_cum = _cumulative(TICKET_CHANNEL_WEIGHTS.values())
        self._priority_cum = _cumulative(_PRIORITY_WEIGHTS)
        geo_mean = math.exp(
            sum(w * math.log(f) for w, f in zip(_PRIORITY_WEIGHTS, _PRIORITY_TTR, strict=True))
        )
        self._ttr_mu = [math.log(ttr_median * f / geo_mean) for f in _PRIORITY_TTR]
        self._category_cum = _cumulative(_CATEGORY_WEIGHTS)
        self._items_cum = _cumulative(_ITEM_COUNT_WEIGHTS)
        self._quantity_cum = _cumulative(_QUANTITY_WEIGHTS)
        self._currency_cum = _cumulative(_CURRENCY_WEIGHTS)
        self._promise_cum = _cumulative(_PROMISE_WEIGHTS)
        self._survey_cum = _cumulative(_SURVEY_KIND_WEIGHTS)
        rng = self._rng
        self._catalog: list[tuple[str, int]] = []
        for i in range(_CATALOG_SIZE):
            euros = max(0, int(rng.lognormvariate(math.log(25.0), 0.9)))
            cents = euros * 100 + rng.choice((99, 99, 99, 49, 95, 0))
            self._catalog.append((f"SKU-{10000 + i}", max(cents, 99)))
        self._customers: list[str] = []  # ring of recent customers, some come back
        self._customer_pos = 0

        # Root arrivals: shopping sessions and independent tickets, at rates that make the
        # expected events per second (follow-ups included) equal `rate`.
        per_session, self._tickets_per_session = self._expected_per_session()
        self._session_rate = rate / per_session  # per second, before the diurnal multiplier
        self._root_rate = self._session_rate * (1 + _TICKETS_PER_SESSION)
        self._p_ticket_root = _TICKETS_PER_SESSION / (1 + _TICKETS_PER_SESSION)
        self._profile_max = max(DIURNAL_PROFILE)

        start_ms = math.floor(start * 1000)
        self._last_ms = start_ms
        # Pending actions (time ms, sequence, action, state). Those before `_horizon` are in the
        # heap; later ones wait in per-`_BUCKET_MS` lists (O(1) to add) and are heapified when
        # their bucket comes, which keeps the heap small: orders wait days, carts seconds.
        self._heap: list[_Action] = []
        self._buckets: dict[int, list[_Action]] = {}
        self._horizon = (start_ms // _BUCKET_MS + 1) * _BUCKET_MS
        self._seq = itertools.count()
        self._out: list[SimEvent] = []
        self._ts_day = self._ts_second = -1  # caches for formatting occurred_at
        self._ts_date = self._ts_prefix = ""
        self._arrival_clock = float(start_ms + 1)  # events lie strictly after `start`
        self._schedule_next_arrival()
        if ttr_spike is not None:
            self._plan_spike_tickets(ttr_spike, start_ms)

    # --- public --------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Time up to which events have been generated (epoch seconds)."""
        return self._last_ms / 1000

    @property
    def pending(self) -> int:
        """Scheduled future actions: the simulator's whole state, bounded by entities in flight."""
        return len(self._heap) + sum(map(len, self._buckets.values()))

    def events_until(self, t_end: float) -> list[SimEvent]:
        """All events with ``now < occurred_at <= t_end``, in time order; advances ``now``."""
        limit = math.floor(t_end * 1000)
        if limit / 1000 > t_end:  # float rounding in t_end * 1000
            limit -= 1
        if limit <= self._last_ms:
            return []
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
        self._last_ms = limit
        return out

    def expected_rate(self, t: float) -> float:
        """Long-run events per second expected at time ``t`` of day (diurnal x rate)."""
        return self.rate * self._diurnal(t * 1000)

    # --- plumbing ------------------------------------------------------------------------------
    def _at(self, t: int, action: Callable[[int, Any], None], state: Any) -> None:
        if t < self._horizon:
            heapq.heappush(self._heap, (t, next(self._seq), action, state))
        else:
            bucket = self._buckets.get(t // _BUCKET_MS)
            if bucket is None:
                self._buckets[t // _BUCKET_MS] = [(t, next(self._seq), action, state)]
            else:
                bucket.append((t, next(self._seq), action, state))

    def _after(
        self, t: int, seconds: float, action: Callable[[int, Any], None], state: Any
    ) -> None:
        self._at(t + int(seconds * 1000), action, state)

    def _diurnal(self, t_ms: float) -> float:
        x = (t_ms / 3_600_000.0 + self._tz - 0.5) % 24.0
        i = int(x)
        low = DIURNAL_PROFILE[i]
        return low + (DIURNAL_PROFILE[(i + 1) % 24] - low) * (x - i)

    def _hex(self, bits: int) -> str:
        return f"{self._ids.getrandbits(bits):0{bits // 4}x}"

    def _customer(self) -> str:
        ring = self._customers
        if ring and self._rng.random() < 0.3:
            return ring[int(self._rng.random() * len(ring))]
        customer = "cus_" + self._hex(64)
        if len(ring) < 4096:
            ring.append(customer)
        else:
            ring[self._customer_pos] = customer
            self._customer_pos = (self._customer_pos + 1) % 4096
        return customer

    def _lognormal(self, median: float, sigma: float) -> float:
        # gauss() makes normals in pairs: about 3x cheaper than lognormvariate()
        return median * math.exp(sigma * self._rng.gauss(0.0, 1.0))

    def _event(
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

    @staticmethod
    def _timestamp(t: int) -> str:
        second, milli = divmod(t, 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{milli:03d}Z"

    # --- calibration ---------------------------------------------------------------------------
    def _expected_per_session(self) -> tuple[float, float]:
        """Events and tickets one shopping session causes on average (follow-ups included)."""
        per_ticket = 1 + _P_REPLY + 1 + 2 * _P_REOPEN + _P_SUPPORT_SURVEY
        per_order = (
            1
            + _P_CHECKOUT_SURVEY
            + _P_CANCEL
            + (1 - _P_CANCEL)
            * (2 + _P_DELIVERY_SURVEY + _P_RETURN + (1 - _P_ON_TIME) * _P_LATE_TICKET * per_ticket)
        )
        items = sum(n * w for n, w in zip(_ITEM_COUNTS, _ITEM_COUNT_WEIGHTS, strict=True))
        removals = _P_REMOVE * (1 - _ITEM_COUNT_WEIGHTS[0])
        total = 0.0
        tickets = _TICKETS_PER_SESSION
        for channel, weight in self._channel_weights.items():
            p_checkout, *steps, p_place = _FUNNEL[channel]
            checkout_events, reach = 1.0, 1.0
            for p in steps:
                reach *= p
                checkout_events += reach
            converted = p_checkout * reach * p_place
            orders = converted + (1 - converted) * _P_RECOVER
            total += weight * (p_checkout * checkout_events + orders * per_order)
            tickets += weight * orders * (1 - _P_CANCEL) * (1 - _P_ON_TIME) * _P_LATE_TICKET
        return items + removals + total + _TICKETS_PER_SESSION * per_ticket, tickets

    # --- root arrivals -------------------------------------------------------------------------
    def _schedule_next_arrival(self) -> None:
        """Non-homogeneous Poisson arrivals by thinning against the diurnal peak."""
        rng = self._rng
        peak = self._profile_max
        rate_ms = self._root_rate * peak / 1000
        clock = self._arrival_clock
        while True:
            clock += rng.expovariate(rate_ms)
            if rng.random() * peak < self._diurnal(clock):
                break
        self._arrival_clock = clock
        self._at(int(clock), self._arrival, None)

    def _arrival(self, t: int, _: None) -> None:
        if self._rng.random() < self._p_ticket_root:
            rng = self._rng
            category = (
                None
                if rng.random() < _P_NO_CATEGORY
                else _CATEGORIES[bisect_right(self._category_cum, rng.random())]
            )
            priority = _PRIORITIES[bisect_right(self._priority_cum, rng.random())]
            self._open_ticket(t, self._customer(), category, priority)
        else:
            self._start_session(t)
        self._schedule_next_arrival()

    # --- carts ---------------------------------------------------------------------------------
    def _start_session(self, t: int) -> None:
        random = self._rng.random
        channel = self._channels[bisect_right(self._channel_cum, random())]
        currency = _CURRENCIES[bisect_right(self._currency_cum, random())]
        n = _ITEM_COUNTS[bisect_right(self._items_cum, random())]
        plan = [_ADD] * n
        if n >= 2 and random() < _P_REMOVE:
            plan.insert(2 + int(random() * (n - 1)), _REMOVE)
        p_checkout, p_ship, p_pay, p_review, p_place = _FUNNEL[channel]
        placed = False
        if random() < p_checkout:
            plan.append(_CHECKOUT)
            for step, p in ((_SHIPPING, p_ship), (_PAYMENT, p_pay), (_REVIEW, p_review)):
                if random() >= p:
                    break
                plan.append(step)
            else:
                placed = random() < p_place
        cart = _Cart("cart_" + self._hex(64), self._customer(), channel, currency, plan, placed)
        self._cart_step(t, cart)

    def _cart_step(self, t: int, cart: _Cart) -> None:
        """Emit the cart's next planned event and schedule the one after (or its order)."""
        rng = self._rng
        code = cart.plan[cart.i]
        cart.i += 1
        if code == _ADD:
            product, price = self._catalog[int(_CATALOG_SIZE * rng.random() ** 2.2)]
            quantity = 1 + bisect_right(self._quantity_cum, rng.random())
            line = cart.lines.get(product)
            if line is None:
                cart.lines[product] = [quantity, price]
            else:
                line[0] += quantity
            value = self._event(
                t,
                "carts",
                cart.cart_id,
                "cart.item_added",
                _ITEM_SOURCE[cart.channel],
                cart.channel,
                cart.customer,
            )
            value["product_id"] = product
            value["quantity"] = quantity
            value["unit_price"] = _cents(price)
            value["currency"] = cart.currency
        elif code == _REMOVE:
            products = list(cart.lines)
            product = products[int(rng.random() * len(products))]
            line = cart.lines[product]
            quantity = line[0] if line[0] == 1 or rng.random() < 0.6 else 1
            line[0] -= quantity
            if line[0] == 0:
                del cart.lines[product]
            value = self._event(
                t,
                "carts",
                cart.cart_id,
                "cart.item_removed",
                _ITEM_SOURCE[cart.channel],
                cart.channel,
                cart.customer,
            )
            value["product_id"] = product
            value["quantity"] = quantity
        elif code == _CHECKOUT:
            self._event(
                t,
                "carts",
                cart.cart_id,
                "checkout.started",
                "checkout-service",
                cart.channel,
                cart.customer,
            )
        else:
            value = self._event(
                t,
                "carts",
                cart.cart_id,
                "checkout.step_completed",
                "checkout-service",
                cart.channel,
                cart.customer,
            )
            value["step"] = _STEP_NAME[code]

        if cart.i < len(cart.plan):
            next_code = cart.plan[cart.i]
            t_next = t + 500 + int(self._lognormal(_GAP_MEDIAN[next_code], 0.8) * 1000)
            self._at(t_next, self._cart_step, cart)
            if cart.placed and cart.i == len(cart.plan) - 1:
                # The order service stamps its own clock: mostly seconds after the last cart
                # event, sometimes slightly before it.
                if rng.random() < _P_ORDER_SKEW:
                    t_order = max(t + 1, t_next - int(rng.uniform(50, 2500)))
                else:
                    t_order = t_next + int(rng.uniform(1500, 15000))
                self._at(t_order, self._place_order, cart)
        elif not cart.placed and rng.random() < _P_RECOVER:
            delay = _ABANDON_AFTER + min(self._lognormal(3 * 3600.0, 1.0), 3 * 86400.0)
            self._after(t, delay, self._place_order, cart)

    # --- orders --------------------------------------------------------------------------------
    def _place_order(self, t: int, cart: _Cart) -> None:
        rng = self._rng
        total = sum(quantity * price for quantity, price in cart.lines.values())
        order = _Order("ord_" + self._hex(64), cart.customer, cart.channel, cart.currency, total)
        value = self._order_event(t, order, "order.placed", "checkout-service")
        value["cart_id"] = cart.cart_id
        value["total"] = _cents(total)
        value["currency"] = order.currency
        if rng.random() < _P_CHECKOUT_SURVEY:
            survey = (order.channel, order.customer, "checkout", 0.1)
            self._after(t, rng.uniform(3, 300), self._survey, survey)
        if rng.random() < _P_CANCEL:
            delay = min(max(self._lognormal(2400.0, 1.0), 60.0), 86400.0)
            self._after(t, delay, self._refund, order)
        else:
            delay = min(max(self._lognormal(8 * 3600.0, 0.7), 1800.0), 72 * 3600.0)
            self._after(t, delay, self._ship, order)

    def _order_event(
        self, t: int, order: _Order, event_type: str, source: str
    ) -> dict[str, object]:
        return self._event(
            t, "orders", order.order_id, event_type, source, order.channel, order.customer
        )

    def _ship(self, t: int, order: _Order) -> None:
        rng = self._rng
        days = _PROMISE_DAYS[bisect_right(self._promise_cum, rng.random())]
        promised = t + days * 86_400_000
        value = self._order_event(t, order, "order.shipped", "fulfillment")
        value["promised_delivery_at"] = self._timestamp(promised)
        if rng.random() < _P_ON_TIME:
            delivered = t + int((promised - t) * rng.uniform(0.35, 0.99))
            lateness = 0.0
        else:
            lateness = max(self._lognormal(14 * 3600.0, 0.8), 300.0)
            delivered = promised + int(lateness * 1000)
            if rng.random() < _P_LATE_TICKET:  # "where is my order?"
                opened = promised + int(lateness * 1000 * rng.uniform(0.1, 0.9))
                priority = "high" if rng.random() < 0.4 else "normal"
                self._at(opened, self._late_ticket, (order.customer, priority))
        self._at(delivered, self._deliver, (order, lateness))

    def _deliver(self, t: int, state: tuple[_Order, float]) -> None:
        order, lateness = state
        rng = self._rng
        self._order_event(t, order, "order.delivered", "fulfillment")
        if rng.random() < _P_DELIVERY_SURVEY:
            shift = 0.15 if lateness == 0 else max(-2.0, -0.7 - 0.4 * lateness / 86400)
            delay = min(max(self._lognormal(4 * 3600.0, 1.0), 120.0), 3 * 86400.0)
            self._after(t, delay, self._survey, (order.channel, order.customer, "delivery", shift))
        if rng.random() < _P_RETURN:
            delay = min(max(self._lognormal(4 * 86400.0, 0.5), 3600.0), 30 * 86400.0)
            self._after(t, delay, self._refund, order)

    def _refund(self, t: int, order: _Order) -> None:
        rng = self._rng
        total = order.total
        amount = total if rng.random() < 0.6 else max(1, int(total * rng.uniform(0.1, 0.9)))
        value = self._order_event(t, order, "order.refunded", "payment-service")
        value["amount"] = _cents(amount)
        value["currency"] = order.currency

    # --- tickets -------------------------------------------------------------------------------
    def _late_ticket(self, t: int, state: tuple[str, str]) -> None:
        customer, priority = state
        self._open_ticket(t, customer, "delivery", priority)

    def _open_ticket(
        self,
        t: int,
        customer: str,
        category: str | None,
        priority: str,
        resolve_at: int | None = None,
    ) -> None:
        rng = self._rng
        channel = self._ticket_channels[bisect_right(self._ticket_channel_cum, rng.random())]
        ticket = _Ticket("tkt_" + self._hex(64), customer, channel, t)
        value = self._ticket_event(t, ticket, "ticket.opened")
        value["priority"] = priority
        if category is not None:
            value["category"] = category
        level = _PRIORITIES.index(priority)
        if resolve_at is None:
            resolved = self._resolution_time(t, self._draw_ttr(level))
        else:
            resolved = resolve_at
        if rng.random() < _P_REPLY:
            reply = self._lognormal(_REPLY_MEDIAN[channel] * (0.4 if level >= 2 else 1.0), 0.9)
            t_reply = t + int(reply * 1000)
            if t_reply >= resolved:
                t_reply = t + int((resolved - t) * rng.uniform(0.1, 0.9))
            self._at(t_reply, self._reply, ticket)
        self._at(resolved, self._resolve, ticket)

    def _ticket_event(self, t: int, ticket: _Ticket, event_type: str) -> dict[str, object]:
        return self._event(
            t, "tickets", ticket.ticket_id, event_type, "helpdesk", ticket.channel, ticket.customer
        )

    def _draw_ttr(self, level: int) -> float:
        """A normal time to resolution in seconds for a ticket of priority index ``level``."""
        return max(math.exp(self._ttr_mu[level] + _TTR_SIGMA * self._rng.gauss(0.0, 1.0)), 30.0)

    def _resolution_time(self, opened: int, ttr: float) -> int:
        """When a normal ticket resolves: after ``ttr`` s, or held to the drain after a spike."""
        resolved = opened + int(ttr * 1000)
        spike = self.ttr_spike
        if spike is not None and spike.start * 1000 <= resolved <= spike.end * 1000:
            drain = self._rng.uniform(0, min(spike.duration, 1800.0))
            return math.floor((spike.end + drain) * 1000) + 1
        return resolved

    def _plan_spike_tickets(self, spike: TtrSpike, start_ms: int) -> None:
        """Schedule the tickets that resolve during the spike; see :class:`TtrSpike`.

        Their resolution times T follow the normal ticket rate (diurnal included) over the
        spike; each gets a normal TTR draw d and opens at T - factor * d, so every TTR observed
        in the spike is factor x a normal one. Opens before ``start`` cannot be emitted and are
        dropped (not enough history: see TtrSpike).
        """
        rng = self._rng
        peak = self._profile_max
        rate_ms = self._session_rate * self._tickets_per_session * peak / 1000
        clock, end = spike.start * 1000, spike.end * 1000
        while True:
            clock += rng.expovariate(rate_ms)
            if clock > end:
                return
            if rng.random() * peak >= self._diurnal(clock):
                continue
            level = bisect_right(self._priority_cum, rng.random())
            resolve_at = int(clock)
            opened = resolve_at - int(self._draw_ttr(level) * spike.factor * 1000)
            category = _CATEGORIES[bisect_right(self._category_cum, rng.random())]
            if opened > start_ms:
                self._at(opened, self._spike_ticket, (_PRIORITIES[level], category, resolve_at))

    def _spike_ticket(self, t: int, state: tuple[str, str, int]) -> None:
        priority, category, resolve_at = state
        self._open_ticket(t, self._customer(), category, priority, resolve_at)

    def _reply(self, t: int, ticket: _Ticket) -> None:
        ticket.replied = True
        self._ticket_event(t, ticket, "ticket.agent_replied")

    def _resolve(self, t: int, ticket: _Ticket) -> None:
        rng = self._rng
        self._ticket_event(t, ticket, "ticket.resolved")
        if ticket.reopened:
            return  # a second resolution: no new survey, no second reopen
        if rng.random() < _P_SUPPORT_SURVEY:
            # Slow resolutions (a TTR spike included) make unhappy customers.
            ttr = (t - ticket.opened) / 1000
            shift = min(0.8, max(-2.0, -0.45 * math.log(ttr / self.ttr_median)))
            if not ticket.replied:
                shift -= 0.3
            delay = min(max(self._lognormal(1200.0, 1.0), 30.0), 2 * 86400.0)
            self._after(t, delay, self._survey, (ticket.channel, ticket.customer, "support", shift))
        if rng.random() < _P_REOPEN:
            delay = min(max(self._lognormal(5 * 3600.0, 1.0), 300.0), 5 * 86400.0)
            self._after(t, delay, self._reopen, ticket)

    def _reopen(self, t: int, ticket: _Ticket) -> None:
        ticket.reopened = True
        self._ticket_event(t, ticket, "ticket.reopened")
        self._after(t, max(self._lognormal(5400.0, 1.0), 60.0), self._resolve, ticket)

    # --- surveys -------------------------------------------------------------------------------
    def _survey(self, t: int, state: tuple[str, str, str, float]) -> None:
        """A response whose latent satisfaction is N(shift, 1); see ``_SCORE_DISTRIBUTIONS``."""
        channel, customer, touchpoint, shift = state
        rng = self._rng
        kind = _SURVEY_KINDS[bisect_right(self._survey_cum, rng.random())]
        z = rng.gauss(shift, 1.0)
        score = _SCORE_DISTRIBUTIONS[kind][0][bisect_right(_THRESHOLDS[kind], z)]
        response_id = "rsp_" + self._hex(64)
        value = self._event(
            t, "surveys", response_id, "survey.submitted", "survey-tool", channel, customer
        )
        value["survey"] = kind
        value["score"] = score
        value["touchpoint"] = touchpoint
        if rng.random() < _P_COMMENT:
            mood = 0 if z < -0.8 else 2 if z > 0.5 else 1
            value["comment"] = rng.choice(_COMMENTS[mood])


# --- Kafka ------------------------------------------------------------------------------------
class _Producer(Protocol):
    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Any: ...


async def produce(
    events: Iterable[SimEvent], producer: _Producer, topic_prefix: str = "cx.", *, batch: int = 2000
) -> int:
    """Send events with an already started ``AIOKafkaProducer``; returns how many were sent.

    ``send`` only enqueues (it waits when the producer's buffer is full); delivery futures are
    awaited per ``batch`` so throughput is not one round trip per event, and a failed delivery
    still raises here.
    """
    dumps = orjson.dumps
    pending: list[Awaitable[Any]] = []
    count = 0
    for event in events:
        pending.append(
            await producer.send(
                topic_prefix + event.topic, value=dumps(event.value), key=event.key.encode()
            )
        )
        count += 1
        if len(pending) >= batch:
            await asyncio.gather(*pending)
            pending.clear()
    if pending:
        await asyncio.gather(*pending)
    return count


async def run_live(
    producer: _Producer,
    *,
    rate: float,
    duration: float | None,
    topic_prefix: str = "cx.",
    seed: int | None = None,
    ttr_spike: TtrSpike | None = None,
    clock: Callable[[], float] = time.time,
    on_batch: Callable[[int], object] | None = None,
    history: float = 0.0,
    tick: float = 0.1,
    **options: Any,
) -> int:
    """Produce simulated traffic in real time until ``duration`` s have passed (None = forever).

    Every ``tick`` the events due by ``clock()`` are produced, so nothing is ever in the future.
    ``history`` seconds of traffic before now are produced first, as fast as possible (so
    deliveries, TTRs and spikes have a past to draw on); ``options`` go to :class:`ShopSimulator`.
    ``on_batch(count)`` is called after each produced batch. Returns the number of events sent.
    """
    began = clock()
    simulator = ShopSimulator(
        rate=rate, seed=seed, start=began - history, ttr_spike=ttr_spike, **options
    )
    stop = None if duration is None else began + duration
    sent = 0
    while True:
        now = clock()
        target = now if stop is None else min(now, stop)
        while True:  # catch up in slices of 60 s: bounded batches after a long pause/history
            step = min(target, simulator.now + 60.0)
            batch = simulator.events_until(step)
            if batch:
                count = await produce(batch, producer, topic_prefix)
                sent += count
                if on_batch is not None:
                    result = on_batch(count)
                    if inspect.isawaitable(result):
                        await result
            if step >= target:
                break
        if stop is not None and now >= stop:
            return sent
        await asyncio.sleep(max(0.0, tick - (clock() - now)))
