"""The sink domain handlers write to: observations at event time, held back until time reaches them.

A window at time T covers ``occurred_at <= T``. Producers may be up to five minutes ahead of our
clock, so an observation whose time is still in the future is kept pending and released into the
delta once the clock passes it; a bucket then never holds anything newer than the present.
"""

from __future__ import annotations

from typing import Any

from pipeline.aggregates.delta import Delta, Labels, Value, decode_value, encode_value
from pipeline.aggregates.sketch import QuantileSketch


class Observations:
    """Collects one checkpoint's observations and totals for a partition."""

    def __init__(self) -> None:
        self.delta = Delta()
        self.pending: list[tuple[str, Labels, float, Value]] = []
        self.links: list[tuple[str, float, str]] = []
        """(cart_id, order time, order event_id) for the cart-orders topic; see pipeline/links."""
        self.signals: list[tuple[str, dict[str, Any]]] = []
        """(entity id, signal JSON object) decided since the last flush, bound for ``cx.signals``;
        sent before the checkpoint that records the decision (see pipeline/worker/delivery)."""
        self.now = 0.0

    def observe(self, name: str, labels: Labels, time: float, value: Value = 1) -> None:
        if time > self.now:
            self.pending.append((name, labels, time, value))
        else:
            self.delta.observe(name, labels, time, value)

    def observe_duration(self, name: str, labels: Labels, time: float, seconds: float) -> None:
        """One duration (TTR, first response) into the window's quantile sketch."""
        if time > self.now:
            sketch = QuantileSketch()
            sketch.add(max(0.0, seconds))
            self.pending.append((name, labels, time, sketch))
        else:
            self.delta.observe_duration(name, labels, time, seconds)

    def link_order(self, cart_id: str, time: float, event_id: str) -> None:
        """Tell the owner of ``cart_id`` that an order named it (cross-topic join)."""
        self.links.append((cart_id, time, event_id))

    def signal(self, key: str, signal: dict[str, Any]) -> None:
        """A fact that calls for an action (CONTRACT.md "Signals"), keyed by its entity id.

        Decided by the domain handler in the same step as the observation it goes with, so a
        replay after a crash re-decides it and re-sends the same ``signal_id``.
        """
        self.signals.append((key, signal))

    def count(self, name: str, labels: Labels, amount: Any = 1) -> None:
        self.delta.count(name, labels, amount)

    def release(self, now: float) -> None:
        """Move pending observations whose time has come into the delta."""
        self.now = now
        if not self.pending:
            return
        due = [item for item in self.pending if item[2] <= now]
        if due:
            self.pending = [item for item in self.pending if item[2] > now]
            for name, labels, time, value in due:
                self.delta.observe(name, labels, time, value)

    def take_delta(self) -> Delta:
        delta, self.delta = self.delta, Delta()
        return delta

    def pending_to_wire(self) -> list[list[Any]]:
        return [[n, list(lb), t, encode_value(v)] for n, lb, t, v in self.pending]

    def restore_pending(self, data: list[list[Any]]) -> None:
        self.pending = [(n, tuple(lb), float(t), decode_value(v)) for n, lb, t, v in data]
