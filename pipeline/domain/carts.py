"""Carts and checkout: each cart's one outcome (converted, abandoned, recovered) by event time.

CONTRACT.md, "Cart abandonment": a cart starts at its first ``cart.item_added``; it converts if an
``order.placed`` names it before it has been idle for the timeout, else it is abandoned at
last-activity + timeout; an order after that is a recovery. Carts and orders come from
independent services, so the decision must not depend on arrival order:

* Activity is kept as *segments*: maximal runs of cart-event times with gaps ≤ timeout. The cart
  first goes idle at ``first segment end + timeout``; a late event can only fill gaps, so it can
  move that point later but never earlier. A conversion, once seen, is therefore final.
* An abandonment is decided only when the wall clock has passed that point + allowed lateness,
  and (like every decision) only once no event of the cart arrived for the quiet period.
* Orders reach the cart's owner through the ``cart-orders`` link topic (pipeline/engine/links.py); one
  that arrives before the cart's events is kept until they come. Timers fire as of the worker's
  orders-settled time (``Worker._settle_orders``): every order that was in Kafka by then has
  reached its cart, however far the orders stage lags (a backfill, a rebalance). An order
  produced after a cart was judged abandoned is a recovery.

Each abandonment and each recovery is also a signal (``cart.abandoned``, ``cart.recovered``),
decided in the same step as its observation: the outcome stored in the checkpoint is the
"signalled" flag, so a replay after a crash re-sends the same ``signal_id`` and never loses one.
What is still in an abandoned cart is folded from its item events up to the idle point, in event
time (at equal times additions before removals), so arrival order never changes it. An order is
known by its ``order_id`` (the link's identity): one order named by two links keeps the earlier
time, so which link arrives first does not matter either.

State is bounded: finished carts shrink to a tombstone kept ``retention`` seconds (late events of
a converted cart are ignored meanwhile; a recovery is recognised within it), and per-cart lists
are capped against hostile producers. Item events past ``MAX_ITEM_EVENTS`` first fold the earlier
ones into one line per product (``Cart.fold_items``), so a storefront sending one event per click
keeps an exact cart.
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
from pipeline.domain.signalling import earliest_customer, emit_signal
from schemas import CartItemAdded, CartItemRemoved, CheckoutStarted, CheckoutStepCompleted

OUTCOMES = ("converted", "abandoned", "recovered")
MAX_SEGMENTS = 64
MAX_STEPS = 64
MAX_ORDERS = 16
MAX_ITEM_EVENTS = 64
NO_CURRENCY = "XXX"
"""ISO 4217's "no currency": only for a cart none of whose additions was kept (capped)."""
MAX_TIMERS_PER_TICK = 1000
"""A backfill makes every cart of its history due at once (~200k carts after 1M events, ~80 µs
each with its signal): in one tick that held the worker's event loop for seconds (no fetch, no
scrape, no heartbeat). A thousand per partition per flush keeps each step near 0.1 s."""


def step_label(step: str | None) -> str:
    """Last completed step as its label value: the step as the producer named it (Segment's
    ``step_name`` such as "Shipping Info" included; the schema caps it at 64 characters), or
    ``none`` when no step was completed (CONTRACT.md "Cart abandonment")."""
    return "none" if step is None else step


def add_activity(segments: list[list[float]], time: float, timeout: float) -> None:
    """Insert ``time`` into sorted, gap-separated segments, merging what it bridges."""
    if segments and time >= segments[-1][1]:  # in order, the usual case: no re-sort
        last = segments[-1]
        if time - last[1] <= timeout:
            last[1] = time
        elif len(segments) < MAX_SEGMENTS:
            segments.append([time, time])
        return
    segments.append([time, time])
    segments.sort()
    merged: list[list[float]] = []
    for start, end in segments:
        if merged and start - merged[-1][1] <= timeout:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if len(merged) > MAX_SEGMENTS:  # keep the first ones: they decide the outcome
        merged = merged[:MAX_SEGMENTS]
    segments[:] = merged


@dataclass
class Cart:
    channel: str | None = None
    first_added: float | None = None
    segments: list[list[float]] = field(default_factory=list)
    steps: list[list[Any]] = field(default_factory=list)
    """[time, step or None]: None marks checkout.started."""
    orders: list[list[Any]] = field(default_factory=list)
    """[time, order id] (order event ids in state written before signals existed)."""
    last_arrival: float = 0.0
    outcome: str | None = None
    idle_at: float | None = None
    """Event time the cart was abandoned at (set once abandoned)."""
    items: list[list[Any]] = field(default_factory=list)
    """[time, product id, quantity, unit price, currency]; a removal has a negative quantity and
    no price. Kept until the outcome is decided (for the abandonment signal)."""
    customer: list[Any] | None = None
    """[time, customer id] of the earliest cart event naming a customer (see signalling)."""

    def to_wire(self) -> list[Any]:
        return [
            self.channel,
            self.first_added,
            self.segments,
            self.steps,
            self.orders,
            self.last_arrival,
            self.outcome,
            self.idle_at,
            self.items,
            self.customer,
        ]

    @classmethod
    def from_wire(cls, data: list[Any]) -> Cart:
        cart = cls(*data)  # older, shorter records leave the newer fields at their defaults
        cart.items = list(cart.items)  # grows in place: never share it with the checkpoint
        return cart

    def idle_point(self, timeout: float) -> float | None:
        """Event time at which the cart first went idle, from what is known so far."""
        if not self.segments:
            return None
        return self.segments[0][1] + timeout

    def last_step_before(self, time: float) -> tuple[bool, str | None]:
        """(checkout started by ``time``, last step completed by ``time``).

        Two steps at the same event time are ordered by name, not by arrival, so the answer is
        the same whatever order the events came in.
        """
        started, last, last_time = False, None, float("-inf")
        for when, step in self.steps:
            if when > time:
                continue
            started = True
            if step is not None and (when, step) > (last_time, last or ""):
                last, last_time = step, when
        return started, last

    def contents_at(self, time: float) -> tuple[list[dict[str, Any]], str, str]:
        """(items still in the cart at ``time``, their value, the cart's currency).

        The currency is that of the first addition; the value sums the items priced in it.
        """
        held, currency = _held([entry for entry in self.items if entry[0] <= time])
        currency = currency or NO_CURRENCY
        items = [
            {"product_id": p, "quantity": q, "unit_price": price, "currency": c}
            for p, (q, price, c, _) in sorted(held.items())
            if q > 0
        ]
        value = sum(
            (Decimal(i["unit_price"]) * i["quantity"] for i in items if i["currency"] == currency),
            Decimal(0),
        )
        return items, str(value), currency

    def fold_items(self) -> None:
        """Make room in ``items``: the item events up to the end of the first activity segment
        (before any idle point, so part of every abandonment's contents) become one line per
        product still held, at the product's first addition. The same sums whatever the order
        of the folded events; only a removal clamped at zero could come out otherwise."""
        if not self.segments:
            return
        horizon = self.segments[0][1]
        early = [entry for entry in self.items if entry[0] <= horizon]
        if len(early) < 2:
            return
        held, _ = _held(early)
        lines = [
            [first, product, quantity, price, currency]
            for product, (quantity, price, currency, first) in held.items()
            if quantity > 0
        ]
        self.items[:] = [*lines, *(entry for entry in self.items if entry[0] > horizon)]


def _held(entries: list[list[Any]]) -> tuple[dict[str, list[Any]], str | None]:
    """Item events folded in event time (additions before removals at equal times):
    product -> [quantity, unit price, currency, first addition time], and the currency of the
    first addition."""
    held: dict[str, list[Any]] = {}
    currency: str | None = None
    for time, product, quantity, price, item_currency in sorted(
        entries, key=lambda e: (e[0], e[2] < 0, e[1], abs(e[2]), e[3] or "", e[4] or "")
    ):
        line = held.setdefault(product, [0, price, item_currency, time])
        if quantity > 0:
            currency = currency or item_currency
            line[0] += quantity
            line[1], line[2] = price, item_currency
        else:
            line[0] = max(0, line[0] + quantity)
    return held, currency


class CartHandler(NoLateSignals):
    """Cart outcomes for one ``cx.carts`` partition (and its ``cart-orders`` links)."""

    def __init__(
        self, *, timeout: float, lateness: float, quiet: float, retention: float = 86_400.0
    ) -> None:
        self.timeout, self.lateness, self.quiet, self.retention = (
            timeout,
            lateness,
            quiet,
            retention,
        )
        self.carts: dict[str, Cart] = {}
        self._due: list[tuple[float, str]] = []
        self._wake: dict[str, float] = {}
        """Each cart's earliest pending timer: a later one is not queued (one entry per cart)."""
        self._changed: set[str] = set()

    # -- input ------------------------------------------------------------------------------
    def handle(self, event: Any, out: Observations) -> None:
        cart = self._touch(event.cart_id, out.now)
        if cart.outcome == "converted":
            return  # late events of a finished cart change nothing
        time = event.ts
        if isinstance(event, CartItemAdded):
            first = (time, str(event.channel))
            if cart.first_added is None or first < (cart.first_added, cart.channel or ""):
                # the earliest item decides the channel; equal times tie-break by name, so
                # arrival order never matters
                cart.first_added, cart.channel = first
        if cart.outcome is None:
            add_activity(cart.segments, time, self.timeout)
            if event.customer_id is not None:
                cart.customer = earliest_customer(cart.customer, time, event.customer_id)
            if isinstance(event, CartItemAdded | CartItemRemoved):
                self._track_item(cart, event, time)
        if isinstance(event, CheckoutStarted) and len(cart.steps) < MAX_STEPS:
            cart.steps.append([time, None])
        elif isinstance(event, CheckoutStepCompleted) and len(cart.steps) < MAX_STEPS:
            cart.steps.append([time, event.step])

    @staticmethod
    def _track_item(cart: Cart, event: CartItemAdded | CartItemRemoved, time: float) -> None:
        if len(cart.items) >= MAX_ITEM_EVENTS:
            cart.fold_items()
            if len(cart.items) >= MAX_ITEM_EVENTS:
                return  # MAX_ITEM_EVENTS products held, or events after an idle point
        if isinstance(event, CartItemAdded):
            entry = [time, event.product_id, event.quantity, str(event.unit_price), event.currency]
        else:
            entry = [time, event.product_id, -event.quantity, None, None]
        cart.items.append(entry)

    def handle_link(self, cart_id: str, time: float, order_id: str, out: Observations) -> None:
        """An ``order.placed`` named this cart (delivered via the link topic)."""
        cart = self._touch(cart_id, out.now)
        for known in cart.orders:
            if known[1] == order_id:  # at-least-once links: the same order twice is one order
                known[0] = min(known[0], time)
                return
        if len(cart.orders) < MAX_ORDERS:
            cart.orders.append([time, order_id])

    def _touch(self, cart_id: str, now: float) -> Cart:
        cart = self.carts.get(cart_id)
        if cart is None:
            cart = self.carts[cart_id] = Cart()
        cart.last_arrival = now
        self._changed.add(cart_id)
        self._schedule(cart_id, now + self.quiet)
        return cart

    def _schedule(self, cart_id: str, due: float) -> None:
        """Wake ``cart_id`` at ``due``, unless it wakes earlier anyway: every decision step
        re-schedules what it still waits for, so one pending timer per cart is enough."""
        if self._wake.get(cart_id, float("inf")) <= due:
            return
        self._wake[cart_id] = due
        heapq.heappush(self._due, (due, cart_id))

    # -- decisions -----------------------------------------------------------------------------
    def tick(self, now: float, out: Observations) -> None:
        """Fire due timers, earliest first, at most ``MAX_TIMERS_PER_TICK``: the rest stay due
        for the next tick (the order of decisions never changes an outcome)."""
        budget = MAX_TIMERS_PER_TICK
        while self._due and self._due[0][0] <= now and budget:
            budget -= 1
            due, cart_id = heapq.heappop(self._due)
            if self._wake.get(cart_id) == due:
                del self._wake[cart_id]
            cart = self.carts.get(cart_id)
            if cart is not None:
                self._decide(cart_id, cart, now, out)

    def _decide(self, cart_id: str, cart: Cart, now: float, out: Observations) -> None:
        if now - cart.last_arrival < self.quiet:
            self._schedule(cart_id, cart.last_arrival + self.quiet)
            return
        if cart.outcome in ("converted", "recovered"):
            self._expire_later(cart_id, cart, now)
            return
        if cart.outcome == "abandoned":
            self._maybe_recover(cart_id, cart, out)
            self._expire_later(cart_id, cart, now)
            return
        idle_at = cart.idle_point(self.timeout)
        if idle_at is None or cart.first_added is None or cart.channel is None:
            self._expire_later(cart_id, cart, now)  # not a cart (yet): no item added
            return
        converting = [t for t, _ in cart.orders if t <= idle_at]
        if converting:
            self._finish(cart_id, cart, "converted")
            out.observe("carts", (cart.channel, "converted"), min(converting))
            self._expire_later(cart_id, cart, now)
            return
        if now < idle_at + self.lateness:
            self._schedule(cart_id, idle_at + self.lateness)
            return
        cart.idle_at = idle_at
        started, last_step = cart.last_step_before(idle_at)
        self._signal_abandoned(cart_id, cart, idle_at, step_label(last_step), out)
        self._finish(cart_id, cart, "abandoned")
        out.observe("carts", (cart.channel, "abandoned"), idle_at)
        if started:
            out.observe("checkout_abandoned", (cart.channel, step_label(last_step)), idle_at)
        self._maybe_recover(cart_id, cart, out)
        self._expire_later(cart_id, cart, now)

    @staticmethod
    def _signal_abandoned(
        cart_id: str, cart: Cart, idle_at: float, last_step: str, out: Observations
    ) -> None:
        if cart.customer is not None and cart.customer[0] > idle_at:
            cart.customer = None  # named only after the abandonment: not this cart's shopper
        items, value, currency = cart.contents_at(idle_at)
        emit_signal(
            out,
            "cart.abandoned",
            cart_id,
            occurred_at=idle_at,
            channel=cart.channel or "web",
            customer_id=cart.customer[1] if cart.customer else None,
            last_step=last_step,
            items=items,
            value=value,
            currency=currency,
        )

    def _maybe_recover(self, cart_id: str, cart: Cart, out: Observations) -> None:
        if cart.orders and cart.channel is not None:
            time, order_id = min(cart.orders)
            self._finish(cart_id, cart, "recovered")
            out.observe("carts", (cart.channel, "recovered"), time)
            emit_signal(
                out,
                "cart.recovered",
                cart_id,
                occurred_at=time,
                channel=cart.channel,
                customer_id=cart.customer[1] if cart.customer else None,
                order_id=order_id,
            )

    def _finish(self, cart_id: str, cart: Cart, outcome: str) -> None:
        cart.outcome = outcome
        # emptied in place, not replaced: after a backfill ~200k carts finish in a row, and
        # three new lists each piled up ~700k young objects the collector's count never saw
        # (the old ones it freed were frozen), so one young collection took 0.74 s at 1M events
        del cart.segments[1:]
        cart.steps.clear()
        cart.items.clear()
        self._changed.add(cart_id)

    def _expire_later(self, cart_id: str, cart: Cart, now: float) -> None:
        """Forget a finished (or never started) cart ``retention`` after its last arrival."""
        forget_at = cart.last_arrival + self.retention
        if now >= forget_at:
            del self.carts[cart_id]
            self._changed.add(cart_id)
        else:
            self._schedule(cart_id, forget_at)

    # -- persistence --------------------------------------------------------------------------
    def take_changes(self, full: bool = False) -> dict[str, Any]:
        if full:
            self._changed.update(self.carts)
        if not self._changed:
            return {}
        changes = {
            cart_id: (self.carts[cart_id].to_wire() if cart_id in self.carts else None)
            for cart_id in self._changed
        }
        self._changed = set()
        return {"carts": changes}

    def restore(self, changes: dict[str, Any]) -> None:
        for cart_id, wire in changes.get("carts", {}).items():
            if wire is None:
                self.carts.pop(cart_id, None)
            else:
                self.carts[cart_id] = Cart.from_wire(wire)
                self._schedule(cart_id, 0.0)  # re-evaluated on the first tick


def metrics(view: MetricView, now: float) -> Iterator[Metric]:
    carts = gauge("cx_carts", "Cart outcomes in the window, by their event time.", "outcome")
    ratio = gauge("cx_cart_abandonment_ratio", "abandoned / (abandoned + converted) in the window.")
    checkout = gauge(
        "cx_checkout_abandoned", "Abandoned carts that had started checkout.", "last_step"
    )
    channels = sorted({labels[0] for labels in view.labels_of("carts")})
    steps = view.labels_of("checkout_abandoned")
    for spec in view.specs:
        read = WindowReader(view, spec, now)
        for channel in channels:
            base = [spec.name, channel]
            counts = {o: read.count("carts", (channel, o)) for o in OUTCOMES}
            for outcome, value in counts.items():
                if value is not None:
                    carts.add_metric([*base, outcome], value)
            decided = (counts["abandoned"] or 0.0) + (counts["converted"] or 0.0)
            if decided:
                ratio.add_metric(base, (counts["abandoned"] or 0.0) / decided)
        for channel, step in steps:
            value = read.count("checkout_abandoned", (channel, step))
            if value is not None:
                checkout.add_metric([spec.name, channel, step], value)
    yield from (carts, ratio, checkout)
