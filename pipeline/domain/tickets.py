"""Support tickets -> TTR, first response, resolved/reopened counts and the open backlog.

CONTRACT.md, "Metric definitions": TTR runs from ``ticket.opened`` to the ticket's FIRST
``ticket.resolved`` and is observed at the resolution's event time; a reopen puts the ticket back
in the backlog and counts as a reopen, but its later resolution adds no second TTR. First response
runs from ``ticket.opened`` to the first ``ticket.agent_replied``. "First" means first in event
time: a ticket's events may land on any partitions, so the worker hands them over in event-time
order once everything produced before them has arrived (``ordered_types`` below).

Decisions where the contract is silent:

* Events that arrive before their ``ticket.opened`` are remembered (at most ``MAX_EARLY`` per
  ticket) and replayed, in arrival order and with their own event times, once it arrives.
* A ticket is forgotten when it has been resolved and its latest event time is older than
  ``retention`` (default 30 days); a reopen or resolution after that finds no ticket and is
  ignored (held as an orphan until ``orphan_retention`` and then dropped). Events of a ticket whose
  ``ticket.opened`` never comes are dropped after ``orphan_retention`` (default 1 day: an opened
  older than the longest window would be late anyway). Open tickets are kept: they ARE the backlog.
* Durations are clamped to >= 0 (a reply stamped before its ticket's opening counts as 0 s).

SLAs (due times, met/breached, at risk, breach signals) are kept by
:class:`pipeline.domain.ticket_sla.SlaTracker`, told of each opening, first reply and first
resolution; the SLA state rides in the ticket's wire form, so it survives restarts with it.

Quantiles come from mergeable sketches per window; the ``cx_ticket_resolution_seconds`` histogram
is kept as running totals so PromQL can alert on it with ``rate()``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from pipeline.aggregates.observations import Observations
from pipeline.aggregates.sketch import QuantileSketch
from pipeline.domain import ticket_sla
from pipeline.domain.handler import NoLateSignals
from pipeline.domain.reading import MetricView, WindowReader, gauge
from pipeline.domain.sla_policy import DEFAULT_POLICY, SlaPolicy
from pipeline.domain.ticket_sla import SlaTracker, TicketSla
from schemas import TicketAgentReplied, TicketOpened, TicketReopened, TicketResolved

DAY = 86_400.0
QUANTILES = (0.5, 0.9, 0.99)
TTR_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
"""Upper bounds (s) of the TTR histogram: 1 min .. 1 week."""
BUCKET_LABELS = tuple(format(le, "g") for le in TTR_BUCKETS)
MAX_EARLY = 32
"""Events remembered per ticket whose ``ticket.opened`` has not arrived (hostile producers)."""

REPLY, RESOLVE, REOPEN = "r", "s", "o"
"""Wire codes of the events that can arrive before ``ticket.opened``."""
_KIND = {TicketAgentReplied: REPLY, TicketResolved: RESOLVE, TicketReopened: REOPEN}


@dataclass
class Ticket:
    opened_at: float | None = None
    """Event time of ``ticket.opened``; None while only later events have arrived."""
    channel: str | None = None
    first_reply_at: float | None = None
    resolved_once: bool = False
    is_open: bool = False
    last_time: float = 0.0
    """Latest event time seen for the ticket (drives forgetting)."""
    early: list[list[Any]] = field(default_factory=list)
    """``[code, event time]`` of events that arrived before ``ticket.opened``."""
    sla: TicketSla | None = None
    """Due times and outcomes, set at ``ticket.opened`` (None in state written before SLAs)."""
    arrived: float = 0.0
    """Wall clock of the ticket's latest event (not persisted: only delays breach decisions)."""

    def to_wire(self) -> list[Any]:
        return [
            self.opened_at,
            self.channel,
            self.first_reply_at,
            self.resolved_once,
            self.is_open,
            self.last_time,
            self.early,
            None if self.sla is None else self.sla.to_wire(),
        ]

    @classmethod
    def from_wire(cls, data: list[Any]) -> Ticket:
        opened_at, channel, first_reply_at, resolved_once, is_open, last_time, early, *rest = data
        sla = TicketSla.from_wire(rest[0]) if rest and rest[0] is not None else None
        return cls(
            opened_at, channel, first_reply_at, resolved_once, is_open, last_time, list(early), sla
        )


def ttr_buckets_of(seconds: float) -> list[str]:
    """The ``le`` labels whose bucket counts a TTR of ``seconds`` (cumulative histogram)."""
    return [label for le, label in zip(TTR_BUCKETS, BUCKET_LABELS, strict=True) if seconds <= le]


class TicketHandler(NoLateSignals):
    """Ticket state for one ``cx.tickets`` partition."""

    ordered_types = frozenset(
        ("ticket.opened", "ticket.agent_replied", "ticket.resolved", "ticket.reopened")
    )
    """Given in event-time order once the topic settled (pipeline/engine/holdback.py): "first"
    reply or resolution and the open/closed state follow event time, wherever events landed."""

    def __init__(
        self,
        *,
        retention: float = 30 * DAY,
        orphan_retention: float = DAY,
        policy: SlaPolicy = DEFAULT_POLICY,
        lateness: float = 120.0,
        quiet: float = 5.0,
    ) -> None:
        self.retention = retention
        self.orphan_retention = orphan_retention
        self.sla = SlaTracker(policy, lateness=lateness, quiet=quiet)
        self.tickets: dict[str, Ticket] = {}
        self._changed: set[str] = set()
        self._due: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        """The live ``_due`` entry of each ticket; other entries are stale (keeps the heap small)."""

    # -- input ------------------------------------------------------------------------------
    def handle(self, event: Any, out: Observations) -> None:
        ticket_id = event.ticket_id
        time = event.ts
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            ticket = self.tickets[ticket_id] = Ticket(last_time=time)
        ticket.last_time = max(ticket.last_time, time)
        ticket.arrived = out.now
        self._changed.add(ticket_id)
        if isinstance(event, TicketOpened):
            if ticket.opened_at is None:
                self._open(ticket_id, ticket, event, out)
        else:
            code = _KIND[type(event)]
            if ticket.opened_at is None:
                if len(ticket.early) < MAX_EARLY:
                    ticket.early.append([code, time])
            else:
                self._apply(ticket_id, ticket, code, time, out)
        self._schedule(ticket_id, ticket)

    def _open(self, ticket_id: str, ticket: Ticket, event: TicketOpened, out: Observations) -> None:
        time, channel = event.ts, str(event.channel)
        ticket.opened_at, ticket.channel, ticket.is_open = time, channel, True
        ticket.sla = self.sla.open(str(event.priority), time, event.customer_id)
        out.count("tickets_open", (channel,), 1)
        early, ticket.early = ticket.early, []
        for code, when in early:
            self._apply(ticket_id, ticket, code, when, out)
        self.sla.arm(ticket_id, ticket)

    def _apply(
        self, ticket_id: str, ticket: Ticket, code: str, time: float, out: Observations
    ) -> None:
        """One reply/resolution/reopen of an opened ticket."""
        assert ticket.opened_at is not None and ticket.channel is not None
        labels = (ticket.channel,)
        if code == REPLY:
            if ticket.first_reply_at is None:
                ticket.first_reply_at = time
                seconds = max(0.0, time - ticket.opened_at)
                out.observe_duration("frt", labels, time, seconds)
                out.observe("frt_sum", labels, time, Decimal(str(round(seconds, 3))))
                self.sla.first_reply(ticket_id, ticket, time, out)
        elif code == RESOLVE:
            if not ticket.is_open:
                return  # already resolved and not reopened
            ticket.is_open = False
            out.count("tickets_open", labels, -1)
            if not ticket.resolved_once:
                ticket.resolved_once = True
                self._first_resolution(labels, time, max(0.0, time - ticket.opened_at), out)
                self.sla.first_resolution(ticket_id, ticket, time, out)
        elif code == REOPEN and not ticket.is_open:
            ticket.is_open = True
            out.count("tickets_open", labels, 1)
            out.observe("tickets_reopened", labels, time)

    @staticmethod
    def _first_resolution(
        labels: tuple[str], time: float, seconds: float, out: Observations
    ) -> None:
        """The one TTR observation of a ticket: sketch, window count and running histogram."""
        (channel,) = labels
        out.observe_duration("ttr", labels, time, seconds)
        out.observe("ttr_sum", labels, time, Decimal(str(round(seconds, 3))))
        out.observe("tickets_resolved", labels, time)
        for le in ttr_buckets_of(seconds):
            out.count("ttr_hist_bucket", (channel, le), 1)
        out.count("ttr_hist_count", labels, 1)
        out.count("ttr_hist_sum", labels, Decimal(str(round(seconds, 3))))

    # -- forgetting ---------------------------------------------------------------------------
    def _horizon(self, ticket: Ticket) -> float | None:
        """How long after its last event time a ticket may be forgotten (None: keep it)."""
        if ticket.opened_at is None:
            return self.orphan_retention
        return None if ticket.is_open else self.retention

    def _schedule(self, ticket_id: str, ticket: Ticket) -> None:
        """Make sure a forgettable ticket is looked at no later than it may be forgotten."""
        horizon = self._horizon(ticket)
        if horizon is not None:
            self._push(ticket_id, ticket.last_time + horizon)

    def _push(self, ticket_id: str, due: float) -> None:
        scheduled = self._scheduled.get(ticket_id)
        if scheduled is None or due < scheduled:
            self._scheduled[ticket_id] = due
            heapq.heappush(self._due, (due, ticket_id))

    def tick(self, now: float, out: Observations) -> None:
        self._changed.update(self.sla.tick(now, self.tickets, out))
        while self._due and self._due[0][0] <= now:
            due, ticket_id = heapq.heappop(self._due)
            if self._scheduled.get(ticket_id) != due:
                continue  # superseded by an earlier entry
            del self._scheduled[ticket_id]
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                continue
            horizon = self._horizon(ticket)
            if horizon is not None and ticket.last_time + horizon <= now:
                del self.tickets[ticket_id]
                self.sla.forget(ticket_id, ticket.sla)
                self._changed.add(ticket_id)
            else:
                self._schedule(ticket_id, ticket)

    # -- persistence --------------------------------------------------------------------------
    def take_changes(self, full: bool = False) -> dict[str, Any]:
        if full:
            self._changed.update(self.tickets)
        exported = self.sla.take_exported(full)
        if not self._changed and exported is None:
            return {}
        changes: dict[str, Any] = {}
        if self._changed:
            changes["t"] = {
                ticket_id: (
                    self.tickets[ticket_id].to_wire() if ticket_id in self.tickets else None
                )
                for ticket_id in sorted(self._changed)
            }
        if exported is not None:
            changes["k"] = exported
        self._changed = set()
        return changes

    def restore(self, changes: dict[str, Any]) -> None:
        for ticket_id, wire in changes.get("t", {}).items():
            known = self.tickets.pop(ticket_id, None)
            if known is not None:
                self.sla.forget(ticket_id, known.sla)
            if wire is None:
                continue
            ticket = self.tickets[ticket_id] = Ticket.from_wire(wire)
            self.sla.arm(ticket_id, ticket)
            self._push(ticket_id, 0.0)  # re-evaluated on the first tick
        if "k" in changes:
            self.sla.restore_exported(changes["k"])


# -- exposition -------------------------------------------------------------------------------
def _quantile_family(name: str, doc: str) -> Metric:
    """A sliding-window summary: the contract's ``{window, channel, quantile}`` series, typed
    ``summary`` (promtool rejects a ``quantile`` label on a gauge) with exact _sum and _count."""
    return Metric(name, doc, "summary")


def _add_quantiles(
    family: Metric, base: list[str], sketch: object | None, total: object | None
) -> None:
    """Quantile, _count and _sum samples of a window; none for an empty window."""
    if not isinstance(sketch, QuantileSketch) or sketch.count == 0:
        return
    labels = dict(zip(("window", "channel"), base, strict=True))
    for q, value in zip(QUANTILES, sketch.quantiles(QUANTILES), strict=True):
        if value is not None:
            family.add_sample(family.name, {**labels, "quantile": format(q, "g")}, value)
    family.add_sample(f"{family.name}_count", labels, float(sketch.count))
    family.add_sample(f"{family.name}_sum", labels, float(total) if total is not None else 0.0)


def _resolution_histogram(view: MetricView) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "cx_ticket_resolution_seconds",
        "Time to resolution of every first resolution, cumulative since the start.",
        labels=["channel"],
    )
    buckets: dict[tuple[str, str], float] = {
        (channel, le): float(n) for (channel, le), n in view.totals_named("ttr_hist_bucket")
    }
    sums = {labels[0]: float(v) for labels, v in view.totals_named("ttr_hist_sum")}
    for (channel,), count in view.totals_named("ttr_hist_count"):
        rows = [(le, buckets.get((channel, le), 0.0)) for le in BUCKET_LABELS]
        family.add_metric([channel], [*rows, ("+Inf", float(count))], sums.get(channel, 0.0))
    return family


def _backlog(view: MetricView) -> dict[str, float]:
    """Open tickets per channel; 0 for a channel that has resolved tickets but none open.

    A +1 and -1 in one checkpoint cancel out and are never written, so without the second
    source a channel whose tickets are all resolved could be missing instead of 0.
    """
    backlog = {labels[0]: 0.0 for labels, _ in view.totals_named("ttr_hist_count")}
    for (channel,), amount in view.totals_named("tickets_open"):
        backlog[channel] = float(amount)
    return dict(sorted(backlog.items()))


def metrics(view: MetricView, now: float) -> Iterator[Metric]:
    ttr = _quantile_family("cx_ttr_seconds", "Time to resolution quantiles over the window (s).")
    frt = _quantile_family(
        "cx_first_response_seconds", "First response time quantiles over the window (s)."
    )
    resolved = gauge("cx_tickets_resolved", "First resolutions in the window.")
    reopened = gauge("cx_tickets_reopened", "Reopens in the window.")
    backlog = GaugeMetricFamily(
        "cx_tickets_open", "Tickets opened or reopened and not resolved, now.", labels=["channel"]
    )
    channels = sorted(
        {
            labels[0]
            for name in ("ttr", "frt", "tickets_resolved", "tickets_reopened")
            for labels in view.labels_of(name)
        }
    )
    business = (
        (
            _quantile_family("cx_ttr_business_seconds", "TTR in business time, quantiles (s)."),
            "ttr",
        ),
        (
            _quantile_family(
                "cx_first_response_business_seconds", "First response in business time (s)."
            ),
            "frt",
        ),
    )
    quantiles = ((ttr, "ttr"), (frt, "frt"), *((f, f"{n}_business") for f, n in business))
    for spec in view.specs:
        read = WindowReader(view, spec, now)
        for channel in channels:
            base = [spec.name, channel]
            for family, name in quantiles:
                _add_quantiles(
                    family,
                    base,
                    view.window_value(name, (channel,), spec, now),
                    view.window_value(f"{name}_sum", (channel,), spec, now),
                )
            for family, name in ((resolved, "tickets_resolved"), (reopened, "tickets_reopened")):
                value = read.count(name, (channel,))
                if value is not None:
                    family.add_metric(base, value)
    for channel, amount in _backlog(view).items():
        backlog.add_metric([channel], amount)
    yield from (ttr, frt, *(family for family, _ in business), resolved, reopened, backlog)
    yield _resolution_histogram(view)
    yield from ticket_sla.metrics(view, now)
