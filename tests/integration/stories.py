"""Event builders for end-to-end tests: each story covers a metric family's edge cases."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def envelope(kind: str, t: float, channel: str | None = "web", **fields) -> dict:
    """A contract event; ``channel=None`` leaves the field out (the contract defaults it)."""
    event = {
        "event_id": uuid.uuid4().hex,
        "event_type": kind,
        "occurred_at": rfc3339(t),
        "schema_version": 1,
        "source": "test",
        **fields,
    }
    if channel is not None:
        event["channel"] = channel
    return event


def item(cart: str, t: float, channel: str = "web") -> dict:
    return envelope(
        "cart.item_added",
        t,
        channel,
        cart_id=cart,
        product_id="p",
        quantity=1,
        unit_price="5.00",
        currency="EUR",
    )


def order(cart: str | None, t: float, channel: str = "web", total: str = "5.00") -> dict:
    fields = {"order_id": uuid.uuid4().hex, "total": total, "currency": "EUR"}
    if cart:
        fields["cart_id"] = cart
    return envelope("order.placed", t, channel, **fields)


def survey(t: float, score: int, channel: str | None = "web", kind: str = "nps", **extra) -> dict:
    return envelope(
        "survey.submitted",
        t,
        channel,
        response_id=uuid.uuid4().hex,
        survey=kind,
        score=score,
        **extra,
    )


def cart_story(now: float) -> tuple[list[dict], list[dict]]:
    """(orders that arrive FIRST, cart events that arrive after) covering every cart outcome."""
    c = {
        name: f"{name}-{uuid.uuid4().hex[:8]}"
        for name in (
            "conv",
            "aband",
            "recov",
            "early",
            "recent",
            "fresh",
            "none",
            "ship",
            "pay",
            "review",
        )
    }
    orders_first = [
        order(c["early"], now - 45 * 60, "mobile_app"),  # before its cart's events arrive
        order(c["conv"], now - 3 * 3600 + 1790),  # 10 s before the timeout
        order(c["recov"], now - 4 * 3600 + 3600),  # after the abandonment: a recovery
        order(c["recent"], now - 120),
        order(None, now - 100),  # an order with no cart
    ]
    carts = [
        item(c["conv"], now - 3 * 3600),
        item(c["aband"], now - 2 * 3600, "chat"),
        envelope("checkout.started", now - 2 * 3600 + 10, "chat", cart_id=c["aband"]),
        envelope(
            "checkout.step_completed",
            now - 2 * 3600 + 20,
            "chat",
            cart_id=c["aband"],
            step="shipping",
        ),
        item(c["recov"], now - 4 * 3600),
        item(c["early"], now - 50 * 60, "mobile_app"),
        item(c["recent"], now - 180),
        item(c["fresh"], now - 60),  # still open: no outcome yet
    ]
    for name, steps in (
        ("none", []),
        ("ship", ["shipping"]),
        ("pay", ["shipping", "payment"]),
        ("review", ["shipping", "payment", "review"]),
    ):
        start = now - 100 * 60  # abandoned ~70 min ago: clear of the 1h edge
        carts += [item(c[name], start), envelope("checkout.started", start + 5, cart_id=c[name])]
        carts += [
            envelope("checkout.step_completed", start + 10 + i, cart_id=c[name], step=s)
            for i, s in enumerate(steps)
        ]
    return orders_first, carts


def ticket(kind: str, ticket_id: str, t: float, channel: str = "chat", **fields) -> dict:
    return envelope(kind, t, channel, ticket_id=ticket_id, **fields)


def ticket_story(now: float) -> list[dict]:
    rng = random.Random(7)
    events: list[dict] = []

    def life(
        opened, replied=None, resolved=None, reopened=None, resolved_again=None, channel="chat"
    ):
        tid = uuid.uuid4().hex[:12]
        events.append(ticket("ticket.opened", tid, now - opened, channel, priority="normal"))
        for kind, ago in (
            ("ticket.agent_replied", replied),
            ("ticket.resolved", resolved),
            ("ticket.reopened", reopened),
            ("ticket.resolved", resolved_again),
        ):
            if ago is not None:
                events.append(ticket(kind, tid, now - ago, channel))
        return tid

    life(3 * 3600 + 600, 3 * 3600, 70 * 60)  # TTR 2 h, only in 24h (off the 1h edge)
    life(30 * 60, 29 * 60, 120, channel="email")  # TTR 28 min, inside 5m
    life(2 * 3600, None, 90 * 60, 80 * 60, 40 * 60)  # reopened: one TTR, one reopen, closed
    life(10 * 60, channel="web")  # no reply yet: open, no first response
    life(20 * 3600, 19 * 3600, 18 * 3600, 600, channel="web")  # reopened 10 min ago: open again
    for _ in range(40):  # a spread of resolutions for the quantiles
        opened = rng.uniform(3600, 6 * 3600)
        resolved = rng.uniform(200, 3000)
        life(
            opened,
            rng.uniform(resolved + 60, 3300),  # replies inside 1h, clear of its edge
            resolved,
            channel=rng.choice(["chat", "email"]),
        )
    return events


def order_story(now: float) -> list[dict]:
    def order_event(kind, order_id, ago, channel="web", **fields):
        return envelope(kind, now - ago, channel, order_id=order_id, **fields)

    events = []
    for i, (total, currency, ago, channel) in enumerate(
        [
            ("19.99", "EUR", 7200, "web"),
            ("0.1", "EUR", 3000, "web"),
            ("0.2", "EUR", 2900, "web"),
            ("100.00", "USD", 1200, "mobile_app"),
            ("5", "EUR", 100, "store"),
            (12.5, "GBP", 200, "web"),
        ]
    ):
        events.append(
            order_event("order.placed", f"o{i}", ago, channel, total=total, currency=currency)
        )
    events.append(
        order_event("order.shipped", "o0", 6600, promised_delivery_at=rfc3339(now - 1800))
    )
    events.append(order_event("order.delivered", "o0", 2400))  # on time
    events.append(
        order_event("order.shipped", "o1", 2800, promised_delivery_at=rfc3339(now - 3600 + 900))
    )
    events.append(order_event("order.delivered", "o1", 600))  # late
    events.append(order_event("order.delivered", "o2", 500))  # no promise known: not judged
    events.append(order_event("order.refunded", "o3", 600, "web", amount="30.50", currency="USD"))
    events.append(order_event("order.refunded", "unknown", 250, "chat", amount=7, currency="EUR"))
    return events
