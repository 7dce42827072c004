"""Support tickets: opened, replied to, resolved (log-normal TTR by priority), sometimes reopened.

Tickets come from four places: independent contacts (root arrivals), "where is my order?" after
a late delivery (the carts story), a :class:`~pipeline.tools.simulate.spike.TtrSpike`'s slow
tickets, planned up front so that every TTR observed inside the spike is slow, and an
:class:`~pipeline.tools.simulate.spike.SlaSpike`'s extra urgent tickets.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.domain.sla_policy import DEFAULT_POLICY
from pipeline.tools.simulate.core import Timeline, cumulative
from pipeline.tools.simulate.spike import SlaSpike, TtrSpike
from pipeline.tools.simulate.surveys import SurveyStories

TICKET_CHANNEL_WEIGHTS: Mapping[str, float] = {
    "chat": 0.34,
    "email": 0.25,
    "call_center": 0.18,
    "web": 0.13,
    "mobile_app": 0.06,
    "social": 0.04,
}
"""Support contacts come mostly through the service channels."""

TICKETS_PER_SESSION = 0.07
"""Independent support contacts per shopping session (root arrivals, not follow-ups)."""
_PRIORITIES = ("low", "normal", "high", "urgent")
_PRIORITY_WEIGHTS = (0.25, 0.50, 0.18, 0.07)
_URGENT = len(_PRIORITIES) - 1
_PRIORITY_TTR = (1.4, 1.0, 0.6, 0.35)  # relative TTR, renormalised to keep the overall median
_CATEGORIES = ("delivery", "payment", "returns", "product", "account", "other")
_CATEGORY_WEIGHTS = (0.28, 0.14, 0.20, 0.16, 0.10, 0.12)
_P_NO_CATEGORY = 0.05
_REPLY_SPEEDUP = (1.0, 1.0, 0.4, 0.05)
"""Reply median factor by priority: urgent tickets are triaged first (an urgent email is answered
in ~9 min, median), so normal traffic keeps few of them at risk of the 15 min first-response
target and CXUrgentTicketsAtRisk stays quiet without an SLA spike."""
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

_URGENT_TARGETS = tuple(
    DEFAULT_POLICY.targets[kind]["urgent"] for kind in ("first_response", "resolution")
)
"""Seconds to the urgent first response and resolution under the default policy (calendar time):
an SLA spike's urgent tickets take longer."""

EVENTS_PER_TICKET = 1 + _P_REPLY + 1 + 2 * _P_REOPEN + _P_SUPPORT_SURVEY
"""Events one ticket causes on average (its survey included), for the rate calibration."""


@dataclass(slots=True)
class _Ticket:
    ticket_id: str
    customer: str
    channel: str
    opened: int  # ms
    replied: bool = False
    reopened: bool = False


class TicketStories:
    """Opens tickets and plays each one to its resolution, reopen and support survey."""

    def __init__(
        self,
        timeline: Timeline,
        surveys: SurveyStories,
        *,
        ttr_median: float,
        ttr_spike: TtrSpike | None,
        sla_spike: SlaSpike | None = None,
    ) -> None:
        self._timeline = timeline
        self._rng = timeline.rng
        self._surveys = surveys
        self._ttr_median = ttr_median
        self._ttr_spike = ttr_spike
        self._sla_spike = sla_spike
        self._channels = list(TICKET_CHANNEL_WEIGHTS)
        self._channel_cum = cumulative(TICKET_CHANNEL_WEIGHTS.values())
        self._priority_cum = cumulative(_PRIORITY_WEIGHTS)
        self._category_cum = cumulative(_CATEGORY_WEIGHTS)
        geo_mean = math.exp(
            sum(w * math.log(f) for w, f in zip(_PRIORITY_WEIGHTS, _PRIORITY_TTR, strict=True))
        )
        self._ttr_mu = [math.log(ttr_median * f / geo_mean) for f in _PRIORITY_TTR]

    def open_independent(self, t: int) -> None:
        """A root arrival: a contact of its own, with a random category and priority."""
        rng = self._rng
        category = (
            None
            if rng.random() < _P_NO_CATEGORY
            else _CATEGORIES[bisect_right(self._category_cum, rng.random())]
        )
        priority = _PRIORITIES[bisect_right(self._priority_cum, rng.random())]
        self._open(t, self._timeline.customer(), category, priority)

    def open_late_delivery(self, t: int, state: tuple[str, str]) -> None:
        """A "where is my order?" ticket, scheduled by the carts story for a late delivery."""
        customer, priority = state
        self._open(t, customer, "delivery", priority)

    def plan_spike(self, spike: TtrSpike, tickets_per_second: float) -> None:
        """Schedule the tickets that resolve during the spike; see :class:`TtrSpike`.

        Their resolution times T follow the normal ticket rate (diurnal included) over the
        spike; each gets a normal TTR draw d and opens at T - factor * d, so every TTR observed
        in the spike is factor x a normal one. Opens before the start cannot be emitted and are
        dropped (not enough history: see TtrSpike).
        """
        rng = self._rng
        clock: float | None = spike.start * 1000
        while True:
            clock = self._timeline.next_arrival(clock, tickets_per_second, spike.end * 1000)
            if clock is None:
                return
            level = bisect_right(self._priority_cum, rng.random())
            resolve_at = int(clock)
            opened = resolve_at - int(self._draw_ttr(level) * spike.factor * 1000)
            category = _CATEGORIES[bisect_right(self._category_cum, rng.random())]
            if opened > self._timeline.start_ms:
                state = (_PRIORITIES[level], category, resolve_at)
                self._timeline.at(opened, self._open_spike_ticket, state)

    def plan_sla_spike(self, spike: SlaSpike, tickets_per_second: float) -> None:
        """Start the spike's extra urgent tickets: ``factor - 1`` x the normal urgent rate
        (diurnal included) over the spike, each arrival scheduling the next one."""
        rate = (spike.factor - 1) * tickets_per_second * _PRIORITY_WEIGHTS[_URGENT]
        start = max(spike.start * 1000, self._timeline.start_ms + 1)
        self._next_urgent((start, rate))

    def _next_urgent(self, state: tuple[float, float]) -> None:
        after, rate = state
        assert self._sla_spike is not None
        clock = self._timeline.next_arrival(after, rate, self._sla_spike.end * 1000)
        if clock is not None:
            self._timeline.at(int(clock), self._open_urgent, (clock, rate))

    def _open_urgent(self, t: int, state: tuple[float, float]) -> None:
        category = _CATEGORIES[bisect_right(self._category_cum, self._rng.random())]
        self._open(t, self._timeline.customer(), category, _PRIORITIES[_URGENT])
        self._next_urgent(state)

    def _open_spike_ticket(self, t: int, state: tuple[str, str, int]) -> None:
        priority, category, resolve_at = state
        self._open(t, self._timeline.customer(), category, priority, resolve_at)

    def _open(
        self,
        t: int,
        customer: str,
        category: str | None,
        priority: str,
        resolve_at: int | None = None,
    ) -> None:
        rng = self._rng
        timeline = self._timeline
        channel = self._channels[bisect_right(self._channel_cum, rng.random())]
        ticket = _Ticket(timeline.new_id("tkt_"), customer, channel, t)
        value = self._ticket_event(t, ticket, "ticket.opened")
        value["priority"] = priority
        if category is not None:
            value["category"] = category
        level = _PRIORITIES.index(priority)
        slow = (
            resolve_at is None
            and level == _URGENT
            and self._sla_spike is not None
            and self._sla_spike.active(t)
        )
        if slow:
            resolve_at = t + int(_URGENT_TARGETS[1] * rng.uniform(*SlaSpike.SLOW_RESOLUTION) * 1000)
        if resolve_at is None:
            resolved = self._resolution_time(t, self._draw_ttr(level))
        else:
            resolved = resolve_at
        if level == _URGENT or rng.random() < _P_REPLY:  # urgent ones always get a reply
            if slow:
                reply = _URGENT_TARGETS[0] * rng.uniform(*SlaSpike.SLOW_REPLY)
            else:
                median = _REPLY_MEDIAN[channel] * _REPLY_SPEEDUP[level]
                reply = timeline.lognormal(median, 0.9)
            t_reply = t + int(reply * 1000)
            if t_reply >= resolved:
                t_reply = t + int((resolved - t) * rng.uniform(0.1, 0.9))
            timeline.at(t_reply, self._reply, ticket)
        timeline.at(resolved, self._resolve, ticket)

    def _ticket_event(self, t: int, ticket: _Ticket, event_type: str) -> dict[str, object]:
        return self._timeline.event(
            t, "tickets", ticket.ticket_id, event_type, "helpdesk", ticket.channel, ticket.customer
        )

    def _draw_ttr(self, level: int) -> float:
        """A normal time to resolution in seconds for a ticket of priority index ``level``."""
        return max(math.exp(self._ttr_mu[level] + _TTR_SIGMA * self._rng.gauss(0.0, 1.0)), 30.0)

    def _resolution_time(self, opened: int, ttr: float) -> int:
        """When a normal ticket resolves: after ``ttr`` s, or held to the drain after a spike."""
        resolved = opened + int(ttr * 1000)
        spike = self._ttr_spike
        if spike is not None and spike.start * 1000 <= resolved <= spike.end * 1000:
            drain = self._rng.uniform(0, min(spike.duration, 1800.0))
            return math.floor((spike.end + drain) * 1000) + 1
        return resolved

    def _reply(self, t: int, ticket: _Ticket) -> None:
        ticket.replied = True
        self._ticket_event(t, ticket, "ticket.agent_replied")

    def _resolve(self, t: int, ticket: _Ticket) -> None:
        rng = self._rng
        timeline = self._timeline
        self._ticket_event(t, ticket, "ticket.resolved")
        if ticket.reopened:
            return  # a second resolution: no new survey, no second reopen
        if rng.random() < _P_SUPPORT_SURVEY:
            # Slow resolutions (a TTR spike included) make unhappy customers.
            ttr = (t - ticket.opened) / 1000
            shift = min(0.8, max(-2.0, -0.45 * math.log(ttr / self._ttr_median)))
            if not ticket.replied:
                shift -= 0.3
            delay = min(max(timeline.lognormal(1200.0, 1.0), 30.0), 2 * 86400.0)
            request = (ticket.channel, ticket.customer, "support", shift)
            timeline.after(t, delay, self._surveys.respond, request)
        if rng.random() < _P_REOPEN:
            delay = min(max(timeline.lognormal(5 * 3600.0, 1.0), 300.0), 5 * 86400.0)
            timeline.after(t, delay, self._reopen, ticket)

    def _reopen(self, t: int, ticket: _Ticket) -> None:
        ticket.reopened = True
        self._ticket_event(t, ticket, "ticket.reopened")
        timeline = self._timeline
        timeline.after(t, max(timeline.lognormal(5400.0, 1.0), 60.0), self._resolve, ticket)
