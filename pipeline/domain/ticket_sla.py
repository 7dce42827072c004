"""SLA bookkeeping of one partition's tickets: due times, met/breached, at-risk, breach signals.

CONTRACT.md, "SLA and business hours (tickets)" and "Signals". The ticket handler calls in at
the ticket's opening, first reply and first resolution; the clock (``tick``) decides breaches.

* Due times are fixed at ``ticket.opened`` (target counted in business time) and persisted with
  the ticket, so a restart never recomputes them, even under a changed policy.
* An outcome, once decided, is final; each kind has at most one observation. A first reply or
  resolution at or before due is **met** (observed at its time). One after due is **breached**
  (observed at due): "first" means first to arrive, so nothing can still prevent it. Without
  either, the clock decides the breach once it passed due + allowed lateness (the timers of
  ``sla_timers``), and, like cart decisions, only once no event of the ticket arrived for the
  quiet period, so a backfill's reply that follows its opening by a moment is judged with it.
* A ticket resolved before its first-response due time without a reply has no first-response
  observation (outcome ``NO_OBSERVATION``); resolved after it, the first response is breached.
* ``cx_tickets_at_risk`` must be whole-shop, so each partition exports its at-risk counts as
  running totals (+1/-1 deltas in the checkpoint, like the backlog) and persists what it has
  exported, so a restored partition continues from there. They are kept per priority too (one
  timer structure per priority), for ``cx_tickets_at_risk_by_priority`` and the "urgent tickets
  at risk" alert.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric

from pipeline.aggregates.observations import Observations
from pipeline.domain.reading import MetricView, WindowReader, gauge
from pipeline.domain.signalling import emit_signal, rfc3339
from pipeline.domain.sla_policy import KINDS, PRIORITIES, SlaPolicy
from pipeline.domain.sla_timers import ArmedTimer, SlaTimers

FIRST_RESPONSE, RESOLUTION = KINDS
MET, BREACHED, NO_OBSERVATION = "m", "b", "n"
"""Outcome codes of a kind (None while pending), as persisted."""
BREACH_SIGNAL = "ticket.sla_breached"


@dataclass(slots=True)
class TicketSla:
    """One ticket's SLA: fixed at its opening, then only outcomes change."""

    priority: str
    due: list[float]
    """Due time per kind, in ``KINDS`` order (epoch seconds)."""
    outcome: list[str | None]
    customer_id: str | None = None
    """Of ``ticket.opened``, for the breach signal."""

    def pending(self, index: int) -> bool:
        return self.outcome[index] is None

    def to_wire(self) -> list[Any]:
        return [self.priority, self.due, self.outcome, self.customer_id]

    @classmethod
    def from_wire(cls, data: list[Any]) -> TicketSla:
        priority, due, outcome, customer_id = data
        return cls(priority, list(due), list(outcome), customer_id)


class SlaTicket(Protocol):
    """What the tracker needs of a ticket (``pipeline.domain.tickets.Ticket``)."""

    channel: str | None
    opened_at: float | None
    sla: TicketSla | None
    arrived: float


class SlaTracker:
    """Due timers, decisions and exported at-risk counts of one partition's tickets."""

    def __init__(self, policy: SlaPolicy, *, lateness: float, quiet: float) -> None:
        self.policy, self.lateness, self.quiet = policy, lateness, quiet
        self.timers = {priority: SlaTimers(lateness=lateness) for priority in PRIORITIES}
        self._held: list[tuple[float, str, int]] = []
        """(release time, ticket id, kind index): breaches waiting for the quiet period."""
        self._exported: dict[tuple[str, str, str], int] = {}
        """At-risk counts per (channel, kind, priority) this partition has put in its
        checkpoints."""
        self._exported_changed = False

    # -- the ticket's life -------------------------------------------------------------------
    def open(self, priority: str, opened_at: float, customer_id: str | None) -> TicketSla:
        due = [self.policy.due(kind, priority, opened_at) for kind in KINDS]
        return TicketSla(priority, due, [None, None], customer_id)

    def arm(self, ticket_id: str, ticket: SlaTicket) -> None:
        """Watch the pending kinds of an opened ticket (also after a restore)."""
        sla = ticket.sla
        if sla is None or ticket.channel is None:
            return
        timers = self.timers[sla.priority]
        for index, kind in enumerate(KINDS):
            if sla.pending(index):
                timers.arm(ticket_id, kind, ticket.channel, sla.due[index])

    def forget(self, ticket_id: str, sla: TicketSla | None) -> None:
        if sla is not None:
            for kind in KINDS:
                self.timers[sla.priority].disarm(ticket_id, kind)

    def armed(self) -> list[ArmedTimer]:
        return [timer for timers in self.timers.values() for timer in timers.armed()]

    def first_reply(
        self, ticket_id: str, ticket: SlaTicket, time: float, out: Observations
    ) -> None:
        self._business_duration("frt_business", ticket, time, out)
        if ticket.sla is not None and ticket.sla.pending(0):
            self._settle(ticket_id, ticket, 0, time, out)

    def first_resolution(
        self, ticket_id: str, ticket: SlaTicket, time: float, out: Observations
    ) -> None:
        self._business_duration("ttr_business", ticket, time, out)
        sla = ticket.sla
        if sla is None:
            return
        if sla.pending(0):
            if time <= sla.due[0]:
                sla.outcome[0] = NO_OBSERVATION  # resolved in time without a reply
                self.timers[sla.priority].disarm(ticket_id, FIRST_RESPONSE)
            else:
                self._settle(ticket_id, ticket, 0, time, out)
        if sla.pending(1):
            self._settle(ticket_id, ticket, 1, time, out)

    def _settle(
        self, ticket_id: str, ticket: SlaTicket, index: int, time: float, out: Observations
    ) -> None:
        """The reply/resolution of kind ``index`` came at ``time``: met or breached, final."""
        assert ticket.sla is not None and ticket.channel is not None
        sla = ticket.sla
        self.timers[sla.priority].disarm(ticket_id, KINDS[index])
        if time <= sla.due[index]:
            sla.outcome[index] = MET
            out.observe("sla_met", (ticket.channel, KINDS[index], sla.priority), time)
        else:
            self._breach(ticket_id, ticket, index, out)

    def _breach(self, ticket_id: str, ticket: SlaTicket, index: int, out: Observations) -> None:
        assert ticket.sla is not None and ticket.channel is not None
        sla, kind = ticket.sla, KINDS[index]
        sla.outcome[index] = BREACHED
        due_at = sla.due[index]
        out.observe("sla_breached", (ticket.channel, kind, sla.priority), due_at)
        emit_signal(
            out,
            BREACH_SIGNAL,
            ticket_id,
            occurred_at=due_at,
            channel=ticket.channel,
            customer_id=sla.customer_id,
            fact=(kind,),
            kind=kind,
            priority=sla.priority,
            due_at=rfc3339(due_at),
        )

    def _business_duration(
        self, name: str, ticket: SlaTicket, time: float, out: Observations
    ) -> None:
        """Business-time TTR / first response: only when business hours are set (CONTRACT)."""
        if not self.policy.business_hours_set or ticket.opened_at is None:
            return
        assert ticket.channel is not None
        seconds = self.policy.business_seconds(ticket.opened_at, time)
        out.observe_duration(name, (ticket.channel,), time, seconds)
        out.observe(f"{name}_sum", (ticket.channel,), time, Decimal(str(round(seconds, 3))))

    # -- the clock ---------------------------------------------------------------------------
    def tick(
        self, now: float, tickets: Mapping[str, SlaTicket], out: Observations
    ) -> Iterator[str]:
        """Decide the breaches due by ``now``; yields the ids of tickets that changed."""
        for timers in self.timers.values():
            for breach in timers.advance(now):
                heapq.heappush(self._held, (0.0, breach.ticket_id, KINDS.index(breach.kind)))
        while self._held and self._held[0][0] <= now:
            _, ticket_id, index = heapq.heappop(self._held)
            ticket = tickets.get(ticket_id)
            if ticket is None or ticket.sla is None or not ticket.sla.pending(index):
                continue  # forgotten, or its reply/resolution came meanwhile
            if now - ticket.arrived < self.quiet:
                heapq.heappush(self._held, (ticket.arrived + self.quiet, ticket_id, index))
                continue
            self._breach(ticket_id, ticket, index, out)
            yield ticket_id
        self._export_at_risk(now, out)

    def _export_at_risk(self, now: float, out: Observations) -> None:
        current = {
            (channel, kind, priority): n
            for priority, timers in self.timers.items()
            for (channel, kind), n in timers.at_risk(now).items()
        }
        for labels in current.keys() | self._exported.keys():
            change = current.get(labels, 0) - self._exported.get(labels, 0)
            if change:
                out.count("sla_at_risk", labels, change)
                self._exported_changed = True
        self._exported = current

    # -- persistence -------------------------------------------------------------------------
    def take_exported(self, full: bool) -> list[list[Any]] | None:
        """The exported at-risk counts when they changed (or ``full``), else None."""
        if not (full or self._exported_changed):
            return None
        self._exported_changed = False
        return [[*labels, n] for labels, n in sorted(self._exported.items())]

    def restore_exported(self, rows: list[list[Any]]) -> None:
        self._exported = {(channel, kind, priority): int(n) for channel, kind, priority, n in rows}


# -- exposition -------------------------------------------------------------------------------
def metrics(view: MetricView, now: float) -> Iterator[Metric]:
    """SLA counts and attainment per window, and the at-risk level now."""
    met = gauge("cx_sla_met", "SLA targets met in the window.", "kind", "priority")
    breached = gauge(
        "cx_sla_breached", "SLA targets breached in the window (at due).", "kind", "priority"
    )
    attainment = gauge("cx_sla_attainment_ratio", "met / (met + breached) in the window.", "kind")
    at_risk = GaugeMetricFamily(
        "cx_tickets_at_risk",
        "Open tickets whose SLA due time is within the next hour and not yet passed, now.",
        labels=["channel", "kind"],
    )
    by_priority = GaugeMetricFamily(
        "cx_tickets_at_risk_by_priority",
        "cx_tickets_at_risk split by ticket priority.",
        labels=["channel", "kind", "priority"],
    )
    seen = {labels for name in ("sla_met", "sla_breached") for labels in view.labels_of(name)}
    channels = sorted({labels[0] for labels in seen})
    for spec in view.specs:
        read = WindowReader(view, spec, now)
        for channel in channels:
            for kind in KINDS:
                base = [spec.name, channel, kind]
                totals = [0.0, 0.0]
                for priority in PRIORITIES:
                    for slot, (family, name) in enumerate(
                        ((met, "sla_met"), (breached, "sla_breached"))
                    ):
                        value = read.count(name, (channel, kind, priority))
                        if value is not None:
                            family.add_metric([*base, priority], value)
                            totals[slot] += value
                if sum(totals):
                    attainment.add_metric(base, totals[0] / sum(totals))
    levels = {(channel, kind): 0.0 for channel in channels for kind in KINDS}
    for (channel, kind, priority), amount in view.totals_named("sla_at_risk"):
        levels[(channel, kind)] = levels.get((channel, kind), 0.0) + float(amount)
        by_priority.add_metric([channel, kind, priority], float(amount))
    for (channel, kind), amount in sorted(levels.items()):
        at_risk.add_metric([channel, kind], amount)
    yield from (met, breached, attainment, at_risk, by_priority)
