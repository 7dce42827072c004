"""Orders -> counts, revenue and AOV per currency, refunds, and the delivery on-time ratio.

CONTRACT.md, "Metric definitions": an order's metrics use the channel of its ``order.placed``;
revenue and refunds are summed per currency as exact decimals (never floats) and AOV is computed at
exposition as revenue / orders of the window, so it is never an average of averages.

Decisions where the contract is silent:

* On-time ratio: a delivery is judged against the ``promised_delivery_at`` of the latest
  ``order.shipped`` seen before it (a re-shipment replaces the promise); delivered exactly at the
  promise is on time. A delivery whose promise is unknown (no ``order.shipped`` arrived before it)
  cannot be judged, so it goes to ``deliveries_unknown_promise`` and is EXCLUDED from both the
  numerator and the denominator; a ``shipped`` applied after its delivery does not re-judge it.
  Shipments, deliveries and refunds are applied in event-time order once everything produced
  before them has arrived, wherever they were placed (``ordered_types`` below).
  Only an order's first delivery counts.
* Refunds: the order's placed channel if known, else the refund event's own channel; the currency
  is always the refund event's (a refund may be paid in another currency than the order).
* A second ``order.placed`` for a known order is ignored (it would double the revenue).
* Late delivery signal (``order.delivery_late``): every promise is a fact of its own (a re-promise
  is a new fact, ``schemas.signals.signal_id``). A promise counts while it is in force, i.e. no
  other ``order.shipped`` happened after the one that made it and by the promised time (a
  re-promise made before the deadline replaces it; one made after it passed does not undo the
  breach). It is breached when no ``order.delivered`` happened at or before it, by event time: a
  delivery that arrives late but happened in time prevents the signal. Like a cart outcome, it is
  decided once the clock passed the promise + allowed lateness and no event of the order arrived
  for the quiet period; the promises decided so far ride in the checkpoint, so each is signalled
  once and a replay re-sends the same ``signal_id``. Event-time ordering makes the decision the
  same whatever the arrival order, and ``order.shipped`` events are capped per order.
* Memory: an order is forgotten ``retention`` after its latest event time once delivered, or
  ``undelivered_retention`` if it never was (the worker sets both to ``CX_ENTITY_RETENTION``,
  30 days), or later, once its promises are decided; a promise due more than another
  ``undelivered_retention`` after that is not waited for (no signal), so a far-future sentinel
  date cannot keep an order for ever. A refund after that
  counts under the refund's channel; a delivery after that counts as an unknown promise. A
  re-sent ``order.placed`` cannot double count meanwhile: its event time is past the longest window,
  so it arrives late and is never aggregated.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client.core import Metric

from pipeline.aggregates.observations import Observations
from pipeline.domain.handler import NoLateSignals
from pipeline.domain.reading import MetricView, WindowReader, gauge
from pipeline.domain.signalling import earliest_customer, emit_signal, rfc3339
from schemas import OrderDelivered, OrderPlaced, OrderRefunded, OrderShipped

DAY = 86_400.0
MAX_SHIPMENTS = 16


@dataclass
class Order:
    channel: str | None = None
    """Channel of ``order.placed``; None until it arrives."""
    currency: str | None = None
    promised_at: float | None = None
    """``promised_delivery_at`` of the latest ``order.shipped`` (epoch seconds)."""
    delivered: bool = False
    last_time: float = 0.0
    """Latest event time seen for the order (drives forgetting)."""
    shipments: list[list[Any]] = field(default_factory=list)
    """[event time, promised time, channel] of each ``order.shipped`` (capped)."""
    delivered_at: float | None = None
    """Earliest ``order.delivered`` event time."""
    decided: list[float] = field(default_factory=list)
    """Promises whose lateness is decided (signalled or not): each fact is decided once."""
    customer: list[Any] | None = None
    """[time, customer id] of the earliest event naming a customer (see signalling)."""
    last_arrival: float = 0.0
    """Wall-clock time the order's latest event arrived (the quiet period runs from it)."""

    def to_wire(self) -> list[Any]:
        return [
            self.channel,
            self.currency,
            self.promised_at,
            self.delivered,
            self.last_time,
            self.shipments,
            self.delivered_at,
            self.decided,
            self.customer,
            self.last_arrival,
        ]

    @classmethod
    def from_wire(cls, data: list[Any]) -> Order:
        order = cls(*data)  # older, shorter records leave the newer fields at their defaults
        # lists grow in place: never share them with the checkpoint they were decoded from
        order.shipments, order.decided = list(order.shipments), list(order.decided)
        return order

    def promises_in_force(self) -> list[list[Any]]:
        """Shipments whose promise was not replaced by a later shipment before it passed."""
        ordered = sorted(self.shipments, key=lambda s: (s[0], s[1]))
        return [
            shipment
            for i, shipment in enumerate(ordered)
            if not any(later[0] <= shipment[1] for later in ordered[i + 1 :])
        ]


class OrderHandler(NoLateSignals):
    """Order state for one ``cx.orders`` partition."""

    ordered_types = frozenset(("order.shipped", "order.delivered", "order.refunded"))
    """Given in event-time order once the topic settled (pipeline/engine/holdback.py), so a
    delivery meets the shipment and a refund the placed order produced before it. Placed orders
    go straight through: their cart links must leave with the checkpoint (worker/settle.py)."""

    def __init__(
        self,
        *,
        retention: float = 30 * DAY,
        undelivered_retention: float = 90 * DAY,
        lateness: float = 120.0,
        quiet: float = 5.0,
    ) -> None:
        self.retention = retention
        self.undelivered_retention = undelivered_retention
        self.promise_wait = undelivered_retention
        """How far past its forgetting an order still waits for a promise to be decided: a
        sentinel date ("9999-12-31") would otherwise keep every such order for ever."""
        self.lateness, self.quiet = lateness, quiet
        self.orders: dict[str, Order] = {}
        self._changed: set[str] = set()
        self._due: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        """The live ``_due`` entry of each order; other entries are stale."""

    # -- input ------------------------------------------------------------------------------
    def handle(self, event: Any, out: Observations) -> None:
        if isinstance(event, OrderRefunded):
            self._refund(event, out)
            return
        time = event.ts
        order = self._touch(event.order_id, time)
        order.last_arrival = out.now
        if event.customer_id is not None:
            order.customer = earliest_customer(order.customer, time, event.customer_id)
        if isinstance(event, OrderPlaced):
            self._place(order, event, out)
        elif isinstance(event, OrderShipped):
            order.promised_at = promise = event.promised_delivery_at.timestamp()
            if len(order.shipments) < MAX_SHIPMENTS:
                order.shipments.append([time, promise, str(event.channel)])
                self._push(event.order_id, max(promise + self.lateness, out.now + self.quiet))
        elif isinstance(event, OrderDelivered):
            if order.delivered_at is None or time < order.delivered_at:
                order.delivered_at = time
            if not order.delivered:
                order.delivered = True
                self._deliver(order, event, out)
        if order.delivered_at is not None and order.shipments:
            # kept promises are decided as the event arrives, not when a timer happens to
            # fire: a partition restored from a checkpoint (timers rebuilt) holds the same state
            self._open_promises(event.order_id, order)
        self._push(event.order_id, order.last_time + self._horizon(order))

    def _touch(self, order_id: str, time: float) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            order = self.orders[order_id] = Order(last_time=time)
        order.last_time = max(order.last_time, time)
        self._changed.add(order_id)
        return order

    @staticmethod
    def _place(order: Order, event: OrderPlaced, out: Observations) -> None:
        if order.channel is not None:
            return  # a second order.placed for the same order
        order.channel, order.currency = str(event.channel), event.currency
        labels = (order.channel, order.currency)
        time = event.ts
        out.observe("orders", labels, time)
        out.observe("revenue", labels, time, event.total)
        if event.cart_id is not None:
            out.link_order(event.cart_id, time, event.order_id)  # the link's identity

    def _refund(self, event: OrderRefunded, out: Observations) -> None:
        order = self.orders.get(event.order_id)
        if order is not None:  # keeps a refunded order (and its channel) around longer
            self._touch(event.order_id, event.ts)
        channel = order.channel if order is not None and order.channel else str(event.channel)
        labels = (channel, event.currency)
        out.observe("refunds", labels, event.ts)
        out.observe("refunded_amount", labels, event.ts, event.amount)

    @staticmethod
    def _deliver(order: Order, event: OrderDelivered, out: Observations) -> None:
        labels = (order.channel or str(event.channel),)
        time = event.ts
        if order.promised_at is None:
            out.observe("deliveries_unknown_promise", labels, time)
            return
        out.observe("deliveries", labels, time)
        if time <= order.promised_at:
            out.observe("deliveries_on_time", labels, time)

    # -- forgetting ---------------------------------------------------------------------------
    def _horizon(self, order: Order) -> float:
        return self.retention if order.delivered else self.undelivered_retention

    def _push(self, order_id: str, due: float) -> None:
        """Look at the order again no later than ``due`` (one live heap entry per order)."""
        scheduled = self._scheduled.get(order_id)
        if scheduled is None or due < scheduled:
            self._scheduled[order_id] = due
            heapq.heappush(self._due, (due, order_id))

    def tick(self, now: float, out: Observations) -> None:
        while self._due and self._due[0][0] <= now:
            due, order_id = heapq.heappop(self._due)
            if self._scheduled.get(order_id) != due:
                continue  # superseded by an earlier entry
            del self._scheduled[order_id]
            order = self.orders.get(order_id)
            if order is None:
                continue
            next_decision = self._decide_lateness(order_id, order, now, out)
            forget_at = order.last_time + self._horizon(order)
            if next_decision is not None and next_decision <= forget_at + self.promise_wait:
                self._push(order_id, next_decision)  # forgetting waits for the promises
            elif forget_at <= now:
                del self.orders[order_id]
                self._changed.add(order_id)
            else:
                self._push(order_id, forget_at)

    def _open_promises(self, order_id: str, order: Order) -> list[list[Any]]:
        """Promises in force whose lateness is undecided; those the delivery kept are decided
        here (delivered by a promise: that promise can never be late)."""
        pending = [s for s in order.promises_in_force() if s[1] not in order.decided]
        delivered = order.delivered_at
        if delivered is None:
            return pending
        still_open = [s for s in pending if delivered > s[1]]
        if len(still_open) < len(pending):
            order.decided.extend(s[1] for s in pending if delivered <= s[1])
            self._changed.add(order_id)
        return still_open

    def _decide_lateness(
        self, order_id: str, order: Order, now: float, out: Observations
    ) -> float | None:
        """Decide the promises that are due; returns when the next one is (None: none left)."""
        pending = self._open_promises(order_id, order)
        if not pending:
            return None
        if now - order.last_arrival < self.quiet:
            return order.last_arrival + self.quiet
        next_due: float | None = None
        for _, promise, ship_channel in pending:
            due = promise + self.lateness
            if now < due:
                next_due = due if next_due is None else min(next_due, due)
                continue
            order.decided.append(promise)
            self._changed.add(order_id)
            if order.delivered_at is not None and order.delivered_at <= promise:
                continue
            emit_signal(
                out,
                "order.delivery_late",
                order_id,
                occurred_at=promise,
                channel=order.channel or ship_channel,
                customer_id=order.customer[1] if order.customer else None,
                fact=(rfc3339(promise),),
                promised_delivery_at=rfc3339(promise),
            )
        return next_due

    # -- persistence --------------------------------------------------------------------------
    def take_changes(self, full: bool = False) -> dict[str, Any]:
        if full:
            self._changed.update(self.orders)
        if not self._changed:
            return {}
        changes = {
            order_id: (self.orders[order_id].to_wire() if order_id in self.orders else None)
            for order_id in sorted(self._changed)
        }
        self._changed = set()
        return {"o": changes}

    def restore(self, changes: dict[str, Any]) -> None:
        for order_id, wire in changes.get("o", {}).items():
            if wire is None:
                self.orders.pop(order_id, None)
            else:
                self.orders[order_id] = Order.from_wire(wire)
                self._push(order_id, 0.0)  # re-evaluated on the first tick


# -- exposition -------------------------------------------------------------------------------
def _sum(
    view: MetricView, name: str, labels: tuple[str, ...], spec: Any, now: float
) -> Decimal | None:
    """A window's exact money sum (None: no observation)."""
    value = view.window_value(name, labels, spec, now)
    return None if value is None else Decimal(value)  # type: ignore[arg-type]


def metrics(view: MetricView, now: float) -> Iterator[Metric]:
    orders = gauge("cx_orders", "Orders placed in the window.", "currency")
    revenue = gauge("cx_revenue", "Sum of order totals in the window.", "currency")
    aov = gauge("cx_order_value_average", "Average order value in the window.", "currency")
    refunds = gauge("cx_refunds", "Refunds in the window.", "currency")
    refunded = gauge("cx_refunded_amount", "Sum of refunded amounts in the window.", "currency")
    on_time = gauge(
        "cx_delivery_on_time_ratio",
        "Deliveries by their promised time / deliveries with a known promise, in the window.",
    )
    placed = view.labels_of("orders")
    refunded_labels = view.labels_of("refunds")
    delivery_channels = [labels[0] for labels in view.labels_of("deliveries")]
    for spec in view.specs:
        read = WindowReader(view, spec, now)
        for labels in placed:
            base = [spec.name, *labels]
            count = read.count("orders", labels)
            total = _sum(view, "revenue", labels, spec, now)
            if count is None:
                continue
            orders.add_metric(base, count)
            revenue.add_metric(base, float(total or 0))
            if count:
                aov.add_metric(base, float((total or Decimal(0)) / Decimal(int(count))))
        for labels in refunded_labels:
            base = [spec.name, *labels]
            count = read.count("refunds", labels)
            if count is not None:
                refunds.add_metric(base, count)
                refunded.add_metric(
                    base, float(_sum(view, "refunded_amount", labels, spec, now) or 0)
                )
        for channel in delivery_channels:
            delivered = read.count("deliveries", (channel,))
            if delivered:
                timely = read.count("deliveries_on_time", (channel,)) or 0.0
                on_time.add_metric([spec.name, channel], timely / delivered)
    yield from (orders, revenue, aov, refunds, refunded, on_time)
