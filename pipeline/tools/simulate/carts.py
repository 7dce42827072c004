"""Shopping sessions and what follows them: carts, the checkout funnel, orders, shipping,
delivery and refunds.

A session fills a cart and walks the checkout funnel, which leaks at every step (more on mobile);
an abandoned cart is sometimes recovered hours later. An order is shipped hours and delivered
days later (~90 % on time); late deliveries cause "where is my order?" tickets and unhappy
delivery surveys, and some orders are cancelled or returned. ``order_time_scale`` shrinks every
delay of an order's life (cancel, ship, promise, lateness, return) for a demo whose history is an
hour: at 1/288 a day's promise is 5 minutes, and deliveries fill the short windows.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.tools.simulate.core import CHANNELS, Timeline, cents, cumulative, timestamp
from pipeline.tools.simulate.surveys import SurveyStories
from pipeline.tools.simulate.tickets import EVENTS_PER_TICKET, TICKETS_PER_SESSION, TicketStories

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


def session_channel_mix(channel_weights: Mapping[str, float] | None) -> dict[str, float]:
    """The channels sessions start on, with normalised weights, in :data:`CHANNELS` order.

    ``None`` means :data:`DEFAULT_CHANNEL_WEIGHTS`; unknown channels, negative weights or a zero
    sum raise ``ValueError``.
    """
    weights = dict(DEFAULT_CHANNEL_WEIGHTS if channel_weights is None else channel_weights)
    unknown = set(weights) - set(CHANNELS)
    if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(
            f"channel_weights need non-negative weights of known channels {CHANNELS}, "
            f"with a positive sum; got {weights!r}"
        )
    channels = [c for c in CHANNELS if weights.get(c, 0) > 0]
    return {c: weights[c] / sum(weights.values()) for c in channels}


def expected_per_session(channel_mix: Mapping[str, float]) -> tuple[float, float]:
    """Events and tickets one shopping session causes on average (follow-ups included).

    Independent tickets count too (``TICKETS_PER_SESSION`` of them per session), so that the
    root arrival rate can be set to make the expected events per second equal the shop's rate.
    """
    per_ticket = EVENTS_PER_TICKET
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
    tickets = TICKETS_PER_SESSION
    for channel, weight in channel_mix.items():
        p_checkout, *steps, p_place = _FUNNEL[channel]
        checkout_events, reach = 1.0, 1.0
        for p in steps:
            reach *= p
            checkout_events += reach
        converted = p_checkout * reach * p_place
        orders = converted + (1 - converted) * _P_RECOVER
        total += weight * (p_checkout * checkout_events + orders * per_order)
        tickets += weight * orders * (1 - _P_CANCEL) * (1 - _P_ON_TIME) * _P_LATE_TICKET
    return items + removals + total + TICKETS_PER_SESSION * per_ticket, tickets


@dataclass(slots=True)
class _Cart:
    cart_id: str
    customer: str
    channel: str
    currency: str
    plan: list[int]  # the planned actions (_ADD, ...), drawn when the session starts
    placed: bool  # whether the funnel ends in an order
    i: int = 0  # next action in `plan`
    lines: dict[str, list[int]] = field(default_factory=dict)  # product -> [quantity, cents]


@dataclass(slots=True)
class _Order:
    order_id: str
    customer: str
    channel: str
    currency: str
    total: int  # cents


class CartStories:
    """Plays shopping sessions: cart, checkout funnel, and the order's life after it."""

    def __init__(
        self,
        timeline: Timeline,
        tickets: TicketStories,
        surveys: SurveyStories,
        channel_mix: Mapping[str, float],
        order_time_scale: float = 1.0,
    ) -> None:
        self._timeline = timeline
        self._scale = order_time_scale
        self._rng = rng = timeline.rng
        self._tickets = tickets
        self._surveys = surveys
        self._channels = list(channel_mix)
        self._channel_cum = cumulative(channel_mix[c] for c in self._channels)
        self._items_cum = cumulative(_ITEM_COUNT_WEIGHTS)
        self._quantity_cum = cumulative(_QUANTITY_WEIGHTS)
        self._currency_cum = cumulative(_CURRENCY_WEIGHTS)
        self._promise_cum = cumulative(_PROMISE_WEIGHTS)
        self._catalog: list[tuple[str, int]] = []  # (product id, unit price in cents)
        for i in range(_CATALOG_SIZE):
            euros = max(0, int(rng.lognormvariate(math.log(25.0), 0.9)))
            price = euros * 100 + rng.choice((99, 99, 99, 49, 95, 0))
            self._catalog.append((f"SKU-{10000 + i}", max(price, 99)))

    # --- carts ---------------------------------------------------------------------------------
    def start_session(self, t: int) -> None:
        """A root arrival: draw the whole session's plan, then play its first cart event."""
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
        timeline = self._timeline
        cart = _Cart(timeline.new_id("cart_"), timeline.customer(), channel, currency, plan, placed)
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
            value = self._cart_event(t, cart, "cart.item_added", _ITEM_SOURCE[cart.channel])
            value["product_id"] = product
            value["quantity"] = quantity
            value["unit_price"] = cents(price)
            value["currency"] = cart.currency
        elif code == _REMOVE:
            products = list(cart.lines)
            product = products[int(rng.random() * len(products))]
            line = cart.lines[product]
            quantity = line[0] if line[0] == 1 or rng.random() < 0.6 else 1
            line[0] -= quantity
            if line[0] == 0:
                del cart.lines[product]
            value = self._cart_event(t, cart, "cart.item_removed", _ITEM_SOURCE[cart.channel])
            value["product_id"] = product
            value["quantity"] = quantity
        elif code == _CHECKOUT:
            self._cart_event(t, cart, "checkout.started", "checkout-service")
        else:
            value = self._cart_event(t, cart, "checkout.step_completed", "checkout-service")
            value["step"] = _STEP_NAME[code]
        self._schedule_after_step(t, cart)

    def _schedule_after_step(self, t: int, cart: _Cart) -> None:
        """The cart's next event; for the last one, its order (placed, or recovered later)."""
        rng = self._rng
        timeline = self._timeline
        if cart.i < len(cart.plan):
            next_code = cart.plan[cart.i]
            t_next = t + 500 + int(timeline.lognormal(_GAP_MEDIAN[next_code], 0.8) * 1000)
            timeline.at(t_next, self._cart_step, cart)
            if cart.placed and cart.i == len(cart.plan) - 1:
                # The order service stamps its own clock: mostly seconds after the last cart
                # event, sometimes slightly before it.
                if rng.random() < _P_ORDER_SKEW:
                    t_order = max(t + 1, t_next - int(rng.uniform(50, 2500)))
                else:
                    t_order = t_next + int(rng.uniform(1500, 15000))
                timeline.at(t_order, self._place_order, cart)
        elif not cart.placed and rng.random() < _P_RECOVER:
            delay = _ABANDON_AFTER + min(timeline.lognormal(3 * 3600.0, 1.0), 3 * 86400.0)
            timeline.after(t, delay, self._place_order, cart)

    def _cart_event(self, t: int, cart: _Cart, event_type: str, source: str) -> dict[str, object]:
        return self._timeline.event(
            t, "carts", cart.cart_id, event_type, source, cart.channel, cart.customer
        )

    # --- orders --------------------------------------------------------------------------------
    def _place_order(self, t: int, cart: _Cart) -> None:
        rng = self._rng
        timeline = self._timeline
        total = sum(quantity * price for quantity, price in cart.lines.values())
        order_id = timeline.new_id("ord_")
        order = _Order(order_id, cart.customer, cart.channel, cart.currency, total)
        value = self._order_event(t, order, "order.placed", "checkout-service")
        value["cart_id"] = cart.cart_id
        value["total"] = cents(total)
        value["currency"] = order.currency
        if rng.random() < _P_CHECKOUT_SURVEY:
            survey = (order.channel, order.customer, "checkout", 0.1)
            timeline.after(t, rng.uniform(3, 300), self._surveys.respond, survey)
        if rng.random() < _P_CANCEL:
            delay = min(max(timeline.lognormal(2400.0, 1.0), 60.0), 86400.0)
            timeline.after(t, delay * self._scale, self._refund, order)
        else:
            delay = min(max(timeline.lognormal(8 * 3600.0, 0.7), 1800.0), 72 * 3600.0)
            timeline.after(t, delay * self._scale, self._ship, order)

    def _order_event(
        self, t: int, order: _Order, event_type: str, source: str
    ) -> dict[str, object]:
        return self._timeline.event(
            t, "orders", order.order_id, event_type, source, order.channel, order.customer
        )

    def _ship(self, t: int, order: _Order) -> None:
        rng = self._rng
        timeline = self._timeline
        days = _PROMISE_DAYS[bisect_right(self._promise_cum, rng.random())]
        promised = t + int(days * 86_400_000 * self._scale)
        value = self._order_event(t, order, "order.shipped", "fulfillment")
        value["promised_delivery_at"] = timestamp(promised)
        if rng.random() < _P_ON_TIME:
            delivered = t + int((promised - t) * rng.uniform(0.35, 0.99))
            lateness = 0.0
        else:
            lateness = max(timeline.lognormal(14 * 3600.0, 0.8), 300.0) * self._scale
            delivered = promised + int(lateness * 1000)
            if rng.random() < _P_LATE_TICKET:  # "where is my order?"
                opened = promised + int(lateness * 1000 * rng.uniform(0.1, 0.9))
                priority = "high" if rng.random() < 0.4 else "normal"
                timeline.at(opened, self._tickets.open_late_delivery, (order.customer, priority))
        timeline.at(delivered, self._deliver, (order, lateness))

    def _deliver(self, t: int, state: tuple[_Order, float]) -> None:
        order, lateness = state
        rng = self._rng
        timeline = self._timeline
        self._order_event(t, order, "order.delivered", "fulfillment")
        if rng.random() < _P_DELIVERY_SURVEY:
            shift = (
                0.15 if lateness == 0 else max(-2.0, -0.7 - 0.4 * lateness / self._scale / 86400)
            )
            delay = min(max(timeline.lognormal(4 * 3600.0, 1.0), 120.0), 3 * 86400.0)
            survey = (order.channel, order.customer, "delivery", shift)
            timeline.after(t, delay, self._surveys.respond, survey)
        if rng.random() < _P_RETURN:
            delay = min(max(timeline.lognormal(4 * 86400.0, 0.5), 3600.0), 30 * 86400.0)
            timeline.after(t, delay * self._scale, self._refund, order)

    def _refund(self, t: int, order: _Order) -> None:
        rng = self._rng
        total = order.total
        amount = total if rng.random() < 0.6 else max(1, int(total * rng.uniform(0.1, 0.9)))
        value = self._order_event(t, order, "order.refunded", "payment-service")
        value["amount"] = cents(amount)
        value["currency"] = order.currency
