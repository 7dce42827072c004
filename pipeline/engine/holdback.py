"""Events whose meaning depends on their entity's other events, held until their order is known.

With any placement, one ticket's ``resolved`` may reach its owner before its ``reopened`` (they
landed on different partitions; one was forwarded). Handlers that read "first", "latest" or
"before" (tickets; shipments, deliveries and refunds of orders) therefore get such events only
once the topic is *settled* up to their arrival: everything that was in Kafka by then has reached
this partition (:mod:`pipeline.worker.settle`). Then every held event up to the latest event time
among the settled ones is handed over in event-time order (ties: arrival order), so an entity's
events produced in event-time order are applied in that order wherever they were placed.

Held events ride in checkpoints (raw key and value): a full checkpoint carries all of them, the
others what changed since the checkpoint before (events held since, sequence numbers released).
A backfill holds every order-dependent event until the whole backlog is read; carrying the whole
list in every checkpoint made its checkpoint bytes grow with the square of the backlog.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Held:
    time: float
    """Event time: the order of release."""
    seq: int
    """Arrival order, to break ties."""
    arrival: float
    """Wall-clock time the event was processed: released once the topic is settled past it."""
    key: bytes | None
    value: bytes
    event: Any = None
    """The decoded event (None after a restore: decoded again at release)."""
    wire: list[Any] | None = None
    """:meth:`to_wire`, kept: a held event rides in every checkpoint until released, and
    re-encoding the whole list each flush was a round-robin producer's main checkpoint cost."""

    def to_wire(self) -> list[Any]:
        if self.wire is None:
            key = None if self.key is None else base64.b64encode(self.key).decode()
            self.wire = [self.time, self.seq, self.arrival, key, self.value.decode()]
        return self.wire

    @classmethod
    def from_wire(cls, data: list[Any]) -> Held:
        time, seq, arrival, key, value = data
        key_bytes = None if key is None else base64.b64decode(key)
        return cls(time, seq, arrival, key_bytes, value.encode(), wire=data)


class HoldBack:
    def __init__(self) -> None:
        self.held: list[Held] = []
        self.changed = False
        self._seq = 0
        self._written: set[int] = set()
        """Sequence numbers held as of the last checkpoint written or restored."""

    def __len__(self) -> int:
        return len(self.held)

    def hold(
        self, time: float, arrival: float, key: bytes | None, value: bytes, event: Any
    ) -> None:
        self._seq += 1
        self.held.append(Held(time, self._seq, arrival, key, value, event))
        self.changed = True

    def release(self, settled: float) -> list[Held]:
        """Held events to apply now, in event-time order (see the module docstring)."""
        settled_times = [h.time for h in self.held if h.arrival <= settled]
        if not settled_times:
            return []
        until = max(settled_times)
        ready = sorted((h for h in self.held if h.time <= until), key=lambda h: (h.time, h.seq))
        self.held = [h for h in self.held if h.time > until]
        self.changed = True
        return ready

    def to_wire(self) -> list[list[Any]]:
        """Every held event, for a full checkpoint."""
        self.changed = False
        self._written = {h.seq for h in self.held}
        return [h.to_wire() for h in self.held]

    def delta_to_wire(self) -> tuple[list[list[Any]], list[int]] | None:
        """(events held since the last checkpoint, sequence numbers released since), or None
        when nothing is held and nothing was: the checkpoint then says "none held"."""
        self.changed = False
        now = {h.seq for h in self.held}
        if not now and not self._written:
            return None
        added = [h.to_wire() for h in self.held if h.seq not in self._written]
        released = sorted(self._written - now)
        self._written = now
        return added, released

    def restore(self, wire: list[list[Any]]) -> None:
        """Every held event, from a full checkpoint (or one written before deltas)."""
        self.held = []
        self.restore_delta(wire, [])

    def restore_delta(self, added: list[list[Any]], released: list[int]) -> None:
        gone = set(released)
        self.held = [h for h in self.held if h.seq not in gone]
        self.held += [Held.from_wire(item) for item in added]
        self._seq = max((h.seq for h in self.held), default=self._seq)
        self._written = {h.seq for h in self.held}
