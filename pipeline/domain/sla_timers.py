"""SLA due timers: the "at risk" gauge and breach decisions, driven by the clock, not by events.

CONTRACT.md, "SLA and business hours (tickets)": ``cx_tickets_at_risk`` counts open tickets whose
due time is within the next hour and not yet passed, per ``(channel, kind)``; a breach is
observed at the due time but decided only once the clock has passed due + allowed lateness, so
a late-arriving reply that happened in time can still disarm it ("Signals").

With 100k open tickets a scan per scrape is too slow, so each armed timer sits in two heaps
keyed by the instant its state next changes: the *risk* heap (enters the hour before due, leaves
once the clock passed due) and the *decision* heap (due + lateness passed). Moving the clock pops
only what changed, and the at-risk counts are kept up to date as it moves. Disarming is O(1):
heap entries of a disarmed or re-armed timer are skipped when they surface (lazy deletion), and
the heaps are compacted when such dead entries outnumber live ones.

"Passed X" means ``now > X`` (a reply exactly at the due time is in time); a timer is at risk
while ``due - horizon <= now <= due``. The clock never goes back: an earlier ``now`` than one
already seen is treated as the latest one seen.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

AT_RISK_HORIZON = 3600.0
"""Seconds before its due time that an open ticket counts as at risk (CONTRACT.md)."""

_BEFORE = 0
_AT_RISK = 1
_PASSED = 2


class Breach(NamedTuple):
    ticket_id: str
    kind: str
    due_at: float


class ArmedTimer(NamedTuple):
    """What must be persisted to rebuild a timer (the ticket handler keeps it in its state)."""

    ticket_id: str
    kind: str
    channel: str
    due_at: float


class _Timer:
    __slots__ = ("channel", "due_at", "key", "phase")

    def __init__(self, key: tuple[str, str], channel: str, due_at: float) -> None:
        self.key, self.channel, self.due_at, self.phase = key, channel, due_at, _BEFORE


def _just_after(instant: float) -> float:
    """The first float time at which ``instant`` has passed (``now > instant``)."""
    return math.nextafter(instant, math.inf)


class SlaTimers:
    """Armed SLA timers of one worker's tickets, keyed by ``(ticket_id, kind)``."""

    def __init__(self, *, lateness: float, horizon: float = AT_RISK_HORIZON) -> None:
        if lateness < 0 or horizon < 0:
            raise ValueError("lateness and horizon must not be negative")
        self.lateness, self.horizon = lateness, horizon
        self.clock = -math.inf
        self._timers: dict[tuple[str, str], _Timer] = {}
        self._risk: list[tuple[float, int, _Timer]] = []
        self._decide: list[tuple[float, int, _Timer]] = []
        self._seq = 0  # heap tie-break: timers themselves are not ordered
        self._dead = 0  # heap entries whose timer was disarmed or re-armed
        self._at_risk: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self._timers)

    # -- arming ------------------------------------------------------------------------------
    def arm(self, ticket_id: str, kind: str, channel: str, due_at: float) -> None:
        """Watch ``kind`` of ``ticket_id``; re-arming replaces the previous due time."""
        key = (ticket_id, kind)
        if key in self._timers:
            self.disarm(ticket_id, kind)
        timer = self._timers[key] = _Timer(key, channel, due_at)
        self._push(self._risk, due_at - self.horizon, timer)
        self._push(self._decide, _just_after(due_at + self.lateness), timer)
        self._move_risk()

    def disarm(self, ticket_id: str, kind: str) -> bool:
        """Stop watching (the reply or resolution came); False if it was not armed."""
        timer = self._timers.pop((ticket_id, kind), None)
        if timer is None:
            return False
        if timer.phase == _AT_RISK:
            self._count(timer, -1)
        self._dead += 2 if timer.phase != _PASSED else 1
        self._compact_if_mostly_dead()
        return True

    def armed(self) -> list[ArmedTimer]:
        """Every armed timer, to persist or to compare."""
        return [
            ArmedTimer(ticket_id, kind, timer.channel, timer.due_at)
            for (ticket_id, kind), timer in self._timers.items()
        ]

    @classmethod
    def rebuild(
        cls, timers: Iterable[ArmedTimer], *, lateness: float, horizon: float = AT_RISK_HORIZON
    ) -> SlaTimers:
        """A fresh structure holding ``timers`` (after a restart, from persisted due times)."""
        rebuilt = cls(lateness=lateness, horizon=horizon)
        for timer in timers:
            rebuilt.arm(timer.ticket_id, timer.kind, timer.channel, timer.due_at)
        return rebuilt

    # -- the clock ---------------------------------------------------------------------------
    def advance(self, now: float) -> list[Breach]:
        """Move the clock to ``now``; return the breaches decided (due + lateness passed),
        ordered by due time. Their timers are disarmed."""
        self.clock = max(self.clock, now)
        self._move_risk()
        breaches: list[Breach] = []
        while self._decide and self._decide[0][0] <= self.clock:
            _, _, timer = heapq.heappop(self._decide)
            if self._timers.get(timer.key) is not timer:
                self._dead -= 1
                continue
            # the risk heap ran first on the same clock, past due: the timer has left "at risk"
            # and has no risk entry left
            del self._timers[timer.key]
            breaches.append(Breach(timer.key[0], timer.key[1], timer.due_at))
        breaches.sort(key=lambda breach: (breach.due_at, breach.ticket_id, breach.kind))
        return breaches

    def at_risk(self, now: float) -> dict[tuple[str, str], int]:
        """Open timers per ``(channel, kind)`` due within the horizon and not yet passed.

        Moves only the risk clock: breaches are decided by ``advance`` alone.
        """
        self.clock = max(self.clock, now)
        self._move_risk()
        return {labels: count for labels, count in self._at_risk.items() if count}

    # -- internals -----------------------------------------------------------------------------
    def _push(self, heap: list[tuple[float, int, _Timer]], when: float, timer: _Timer) -> None:
        self._seq += 1
        heapq.heappush(heap, (when, self._seq, timer))

    def _count(self, timer: _Timer, delta: int) -> None:
        self._at_risk[(timer.channel, timer.key[1])] += delta

    def _move_risk(self) -> None:
        """Apply every risk change due by the clock: enter the horizon, then pass due."""
        heap = self._risk
        while heap and heap[0][0] <= self.clock:
            _, _, timer = heapq.heappop(heap)
            if self._timers.get(timer.key) is not timer:
                self._dead -= 1
                continue
            if timer.phase == _BEFORE:
                timer.phase = _AT_RISK
                self._count(timer, 1)
                self._push(heap, _just_after(timer.due_at), timer)
            else:
                timer.phase = _PASSED
                self._count(timer, -1)

    def _compact_if_mostly_dead(self) -> None:
        if self._dead <= len(self._risk) + len(self._decide) - self._dead + 1024:
            return
        live = self._timers
        self._risk = [entry for entry in self._risk if live.get(entry[2].key) is entry[2]]
        self._decide = [entry for entry in self._decide if live.get(entry[2].key) is entry[2]]
        heapq.heapify(self._risk)
        heapq.heapify(self._decide)
        self._dead = 0
