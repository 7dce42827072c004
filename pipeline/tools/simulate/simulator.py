"""The shop: root arrivals (shopping sessions and independent tickets) on a day/night cycle,
calibrated so that the events they cause, follow-ups included, average ``rate`` per second."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.tools.simulate.carts import CartStories, expected_per_session, session_channel_mix
from pipeline.tools.simulate.core import SimEvent, Timeline
from pipeline.tools.simulate.spike import SlaSpike, TtrSpike
from pipeline.tools.simulate.surveys import SurveyStories
from pipeline.tools.simulate.tickets import TICKETS_PER_SESSION, TicketStories


@dataclass(frozen=True, slots=True)
class Ramp:
    """A shop whose traffic grows into its rate: before ``full_at`` (epoch s) sessions start at
    ``0.5 ** ((full_at - t) / half_life)`` x the rate, from ``full_at`` on at the full rate.
    Follow-ups (orders, deliveries, surveys) follow their sessions. Tickets keep the full rate
    (they are a few % of the events): a thinned past would leave the 24h TTR baseline made of
    the last minutes' quick resolutions, and a calm demo would show a TTR spike.

    A demo's history needs few events this way (half-life 5 min: ~7 min of full traffic stand
    for an hour) and its windows still fill; the numbers are those of a growing shop.
    """

    full_at: float
    half_life: float

    def __post_init__(self) -> None:
        if not self.half_life > 0:
            raise ValueError(f"the ramp's half-life must be positive, got {self.half_life!r}")

    def factor(self, t: float) -> float:
        """The share of the full rate at epoch second ``t``."""
        return 1.0 if t >= self.full_at else 0.5 ** ((self.full_at - t) / self.half_life)


class ShopSimulator:
    """Generates a shop's event stream forward in time; see :mod:`pipeline.tools.simulate`.

    ``rate`` is the average number of events per second over a day (the day/night profile moves
    the instantaneous rate between ~0.3x and ~1.6x). ``utc_offset_hours`` places the shop's local
    day; ``ttr_median`` is the median time to resolution of a ticket in seconds;
    ``order_time_scale`` (<= 1) shrinks the delays of an order's life, for a short demo history;
    ``ramp`` thins the root arrivals before a time (:class:`Ramp`).
    """

    def __init__(
        self,
        *,
        rate: float,
        seed: int | None = None,
        start: float,
        ttr_spike: TtrSpike | None = None,
        sla_spike: SlaSpike | None = None,
        channel_weights: Mapping[str, float] | None = None,
        ttr_median: float = 7200.0,
        utc_offset_hours: float = 0.0,
        order_time_scale: float = 1.0,
        ramp: Ramp | None = None,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of events per second, got {rate!r}")
        if not ttr_median > 0:
            raise ValueError(f"ttr_median must be positive, got {ttr_median!r}")
        if not 0 < order_time_scale <= 1:
            raise ValueError(f"order_time_scale must be in (0, 1], got {order_time_scale!r}")
        channel_mix = session_channel_mix(channel_weights)
        self.rate = rate
        self.ttr_spike = ttr_spike
        self.sla_spike = sla_spike
        self.ttr_median = ttr_median
        self.ramp = ramp
        self._timeline = timeline = Timeline(
            seed=seed, start=start, utc_offset_hours=utc_offset_hours
        )
        self._rng = timeline.rng
        surveys = SurveyStories(timeline)
        self._tickets = TicketStories(
            timeline, surveys, ttr_median=ttr_median, ttr_spike=ttr_spike, sla_spike=sla_spike
        )
        self._carts = CartStories(timeline, self._tickets, surveys, channel_mix, order_time_scale)

        # Root arrivals: shopping sessions and independent tickets, at rates that make the
        # expected events per second (follow-ups included) equal `rate`.
        per_session, tickets_per_session = expected_per_session(channel_mix)
        session_rate = rate / per_session  # per second, before the diurnal multiplier
        self._root_rate = session_rate * (1 + TICKETS_PER_SESSION)
        self._p_ticket_root = TICKETS_PER_SESSION / (1 + TICKETS_PER_SESSION)
        self._arrival_clock = float(timeline.start_ms + 1)  # events lie strictly after `start`
        self._schedule_next_arrival()
        tickets_per_second = session_rate * tickets_per_session
        if ttr_spike is not None:
            self._tickets.plan_spike(ttr_spike, tickets_per_second)
        if sla_spike is not None:
            self._tickets.plan_sla_spike(sla_spike, tickets_per_second)

    @property
    def now(self) -> float:
        """Time up to which events have been generated (epoch seconds)."""
        return self._timeline.last_ms / 1000

    @property
    def pending(self) -> int:
        """Scheduled future actions: the simulator's whole state, bounded by entities in flight."""
        return self._timeline.pending

    def events_until(self, t_end: float) -> list[SimEvent]:
        """All events with ``now < occurred_at <= t_end``, in time order; advances ``now``."""
        limit = math.floor(t_end * 1000)
        if limit / 1000 > t_end:  # float rounding in t_end * 1000
            limit -= 1
        if limit <= self._timeline.last_ms:
            return []
        return self._timeline.run_until(limit)

    def expected_rate(self, t: float) -> float:
        """Long-run events per second expected at time ``t`` of day (diurnal x rate)."""
        return self.rate * self._timeline.diurnal(t * 1000)

    def _schedule_next_arrival(self) -> None:
        clock = self._timeline.next_arrival(self._arrival_clock, self._root_rate)
        assert clock is not None  # no end
        self._arrival_clock = clock
        self._timeline.at(int(clock), self._arrival, None)

    def _arrival(self, t: int, _: None) -> None:
        ramp = self.ramp
        if self._rng.random() < self._p_ticket_root:
            self._tickets.open_independent(t)
        elif ramp is None or self._rng.random() < ramp.factor(t / 1000):
            self._carts.start_session(t)
        self._schedule_next_arrival()
