"""An independent calculation of the contract's metrics, straight from raw event dicts.

Deliberately naive (lists, loops, the contract's formulas verbatim) and sharing no code with
``pipeline``; integration tests compare the worker's /metrics against it.
"""

from __future__ import annotations

from datetime import datetime

WINDOWS = {"5m": 300.0, "1h": 3600.0, "24h": 86_400.0}
"""The pipeline's default windows (``CX_WINDOWS=5m,1h,24h``), as label -> seconds."""
SURVEY_METRICS = (
    "cx_nps_score",
    "cx_nps_responses",
    "cx_csat_ratio",
    "cx_ces_score",
    "cx_survey_responses",
)
"""The families :func:`survey_expectations` computes."""
CART_METRICS = ("cx_carts", "cx_cart_abandonment_ratio", "cx_checkout_abandoned")
"""The families :func:`cart_expectations` computes."""


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def in_window(t: float, now: float, length: float) -> bool:
    return now - length < t <= now


def first_seen(events: list[dict]) -> list[dict]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        unique.append(event)
    return unique


def survey_expectations(events: list[dict], now: float, windows: dict[str, float]) -> dict:
    """{(metric, frozenset(labels)) : value} for the survey metrics of CONTRACT.md."""
    expected: dict = {}
    surveys = [e for e in first_seen(events) if e["event_type"] == "survey.submitted"]
    surveys = [e for e in surveys if now - epoch(e["occurred_at"]) <= max(windows.values())]
    for window, length in windows.items():
        channels = {e.get("channel", "web") for e in surveys}
        for channel in channels:
            mine = [
                e
                for e in surveys
                if e.get("channel", "web") == channel
                and in_window(epoch(e["occurred_at"]), now, length)
            ]
            base = {"window": window, "channel": channel}
            nps = [e["score"] for e in mine if e["survey"] == "nps"]
            csat = [e["score"] for e in mine if e["survey"] == "csat"]
            ces = [e["score"] for e in mine if e["survey"] == "ces"]
            for survey, scores in (("nps", nps), ("csat", csat), ("ces", ces)):
                if scores:
                    expected[
                        ("cx_survey_responses", frozenset({**base, "survey": survey}.items()))
                    ] = len(scores)
            if nps:
                p = sum(1 for s in nps if s >= 9)
                d = sum(1 for s in nps if s <= 6)
                expected[("cx_nps_score", frozenset(base.items()))] = 100.0 * (p - d) / len(nps)
                for category, n in (
                    ("promoter", p),
                    ("passive", len(nps) - p - d),
                    ("detractor", d),
                ):
                    expected[
                        ("cx_nps_responses", frozenset({**base, "category": category}.items()))
                    ] = n
            if csat:
                expected[("cx_csat_ratio", frozenset(base.items()))] = sum(
                    1 for s in csat if s >= 4
                ) / len(csat)
            if ces:
                expected[("cx_ces_score", frozenset(base.items()))] = sum(ces) / len(ces)
    return expected


def cart_outcomes(
    events: list[dict], now: float, timeout: float = 1800.0, lateness: float = 120.0
) -> list[tuple[str, str, float]]:
    """(channel, outcome, time) per cart; checkout abandonment as ``checkout:<last_step>``.

    An abandonment exists only once ``now`` is past last activity + timeout + lateness.
    """
    carts: dict[str, dict] = {}
    for event in first_seen(events):
        kind = event["event_type"]
        if kind == "order.placed" and event.get("cart_id"):
            carts.setdefault(event["cart_id"], {"events": [], "orders": []})["orders"].append(
                epoch(event["occurred_at"])
            )
        elif kind.startswith(("cart.", "checkout.")):
            carts.setdefault(event["cart_id"], {"events": [], "orders": []})["events"].append(event)
    results = []
    for cart in carts.values():
        added = sorted(
            (epoch(e["occurred_at"]), e.get("channel", "web"))
            for e in cart["events"]
            if e["event_type"] == "cart.item_added"
        )
        if not added:
            continue
        channel = added[0][1]
        times = sorted(epoch(e["occurred_at"]) for e in cart["events"])
        idle = next(
            times[i] + timeout
            for i in range(len(times))
            if i == len(times) - 1 or times[i + 1] - times[i] > timeout
        )
        orders = sorted(cart["orders"])
        if any(o <= idle for o in orders):
            results.append((channel, "converted", min(o for o in orders if o <= idle)))
            continue
        if now < idle + lateness:
            continue  # not decided yet
        results.append((channel, "abandoned", idle))
        checkout = [
            e
            for e in cart["events"]
            if e["event_type"].startswith("checkout.") and epoch(e["occurred_at"]) <= idle
        ]
        if checkout:
            steps = sorted(
                (epoch(e["occurred_at"]), e["step"])
                for e in checkout
                if e["event_type"] == "checkout.step_completed"
            )
            results.append((channel, f"checkout:{steps[-1][1] if steps else 'none'}", idle))
        if orders:
            results.append((channel, "recovered", orders[0]))
    return results


def cart_expectations(events: list[dict], now: float, windows: dict[str, float]) -> dict:
    """cx_carts, cx_cart_abandonment_ratio and cx_checkout_abandoned per window and channel."""
    expected: dict = {}
    outcomes = cart_outcomes(events, now)
    for window, length in windows.items():
        inside = [o for o in outcomes if in_window(o[2], now, length)]
        for channel in {o[0] for o in inside}:
            base = {"window": window, "channel": channel}
            mine = [o for o in inside if o[0] == channel]
            for outcome in ("converted", "abandoned", "recovered"):
                n = sum(1 for o in mine if o[1] == outcome)
                if n:
                    expected[("cx_carts", frozenset({**base, "outcome": outcome}.items()))] = n
            abandoned = sum(1 for o in mine if o[1] == "abandoned")
            converted = sum(1 for o in mine if o[1] == "converted")
            if abandoned + converted:
                expected[("cx_cart_abandonment_ratio", frozenset(base.items()))] = abandoned / (
                    abandoned + converted
                )
            for step in {o[1] for o in mine if o[1].startswith("checkout:")}:
                n = sum(1 for o in mine if o[1] == step)
                expected[
                    (
                        "cx_checkout_abandoned",
                        frozenset({**base, "last_step": step.split(":", 1)[1]}.items()),
                    )
                ] = n
    return expected


def rank_quantile(values: list[float], q: float) -> float:
    """The value at rank ceil(q * n) (1-based) of the sorted values."""
    import math

    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ticket_expectations(events: list[dict], now: float, windows: dict[str, float]) -> dict:
    """TTR/first-response quantiles, resolved, reopened, backlog, histogram (events in order)."""
    tickets: dict[str, dict] = {}
    ttr, frt, reopened = [], [], []  # (channel, time, value)
    for event in first_seen(events):
        kind, t = event["event_type"], epoch(event["occurred_at"])
        if not kind.startswith("ticket."):
            continue
        ticket = tickets.get(event["ticket_id"])
        if kind == "ticket.opened" and ticket is None:
            tickets[event["ticket_id"]] = {
                "opened": t,
                "channel": event.get("channel", "web"),
                "open": True,
                "replied": False,
                "resolved_once": False,
            }
            continue
        if ticket is None:
            continue
        if kind == "ticket.agent_replied" and not ticket["replied"]:
            ticket["replied"] = True
            frt.append((ticket["channel"], t, t - ticket["opened"]))
        elif kind == "ticket.resolved" and ticket["open"]:
            ticket["open"] = False
            if not ticket["resolved_once"]:
                ticket["resolved_once"] = True
                ttr.append((ticket["channel"], t, t - ticket["opened"]))
        elif kind == "ticket.reopened" and not ticket["open"]:
            ticket["open"] = True
            reopened.append((ticket["channel"], t))
    expected: dict = {}
    for window, length in windows.items():
        for channel in {c for c, _, _ in ttr + frt} | {c for c, _ in reopened}:
            base = {"window": window, "channel": channel}
            for name, observations in (("cx_ttr_seconds", ttr), ("cx_first_response_seconds", frt)):
                values = [
                    v for c, t, v in observations if c == channel and in_window(t, now, length)
                ]
                for q in ("0.5", "0.9", "0.99"):
                    if values:
                        expected[(name, frozenset({**base, "quantile": q}.items()))] = (
                            rank_quantile(values, float(q))
                        )
            resolved = sum(1 for c, t, _ in ttr if c == channel and in_window(t, now, length))
            if resolved:
                expected[("cx_tickets_resolved", frozenset(base.items()))] = resolved
            reopens = sum(1 for c, t in reopened if c == channel and in_window(t, now, length))
            if reopens:
                expected[("cx_tickets_reopened", frozenset(base.items()))] = reopens
    for channel in {t["channel"] for t in tickets.values()}:
        expected[("cx_tickets_open", frozenset({"channel": channel}.items()))] = sum(
            1 for t in tickets.values() if t["channel"] == channel and t["open"]
        )
        values = [v for c, _, v in ttr if c == channel]
        if values:
            expected[
                ("cx_ticket_resolution_seconds_count", frozenset({"channel": channel}.items()))
            ] = len(values)
            for le in (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800, "+Inf"):
                key = (
                    "cx_ticket_resolution_seconds_bucket",
                    frozenset({"channel": channel, "le": f"{float(le)}"}.items()),
                )
                expected[key] = sum(1 for v in values if v <= float(le))
    return expected


def order_expectations(events: list[dict], now: float, windows: dict[str, float]) -> dict:
    """Orders, revenue, AOV per currency; refunds; on-time delivery (events in order)."""
    from decimal import Decimal

    placed: dict[str, dict] = {}
    promised: dict[str, float] = {}
    rows = []  # (metric, channel, currency, time, value)
    for event in first_seen(events):
        kind, t = event["event_type"], epoch(event["occurred_at"])
        order_id = event.get("order_id")
        if kind == "order.placed" and order_id not in placed:
            placed[order_id] = {"channel": event.get("channel", "web")}
            rows.append(("orders", placed[order_id]["channel"], event["currency"], t, Decimal(1)))
            rows.append(
                (
                    "revenue",
                    placed[order_id]["channel"],
                    event["currency"],
                    t,
                    Decimal(str(event["total"])),
                )
            )
        elif kind == "order.refunded":
            channel = placed.get(order_id, {}).get("channel", event.get("channel", "web"))
            rows.append(("refunds", channel, event["currency"], t, Decimal(1)))
            rows.append(("refunded", channel, event["currency"], t, Decimal(str(event["amount"]))))
        elif kind == "order.shipped":
            promised[order_id] = epoch(event["promised_delivery_at"])
        elif kind == "order.delivered" and order_id in promised:
            channel = placed.get(order_id, {}).get("channel", event.get("channel", "web"))
            rows.append(("deliveries", channel, "", t, Decimal(1)))
            rows.append(
                ("on_time", channel, "", t, Decimal(1 if t <= promised.pop(order_id) else 0))
            )
    expected: dict = {}
    names = {
        "orders": "cx_orders",
        "revenue": "cx_revenue",
        "refunds": "cx_refunds",
        "refunded": "cx_refunded_amount",
    }
    for window, length in windows.items():
        inside = [r for r in rows if in_window(r[3], now, length)]
        for channel, currency in {(r[1], r[2]) for r in inside if r[2]}:
            base = {"window": window, "channel": channel, "currency": currency}
            sums = {
                m: sum((r[4] for r in inside if r[:3] == (m, channel, currency)), Decimal(0))
                for m in names
            }
            for metric, family in names.items():
                if any(r[:3] == (metric, channel, currency) for r in inside):
                    expected[(family, frozenset(base.items()))] = float(sums[metric])
            if sums["orders"]:
                expected[("cx_order_value_average", frozenset(base.items()))] = float(
                    sums["revenue"] / sums["orders"]
                )
        for channel in {r[1] for r in inside if r[0] == "deliveries"}:
            delivered = [r for r in inside if r[1] == channel and r[0] == "on_time"]
            expected[
                (
                    "cx_delivery_on_time_ratio",
                    frozenset({"window": window, "channel": channel}.items()),
                )
            ] = float(sum(r[4] for r in delivered) / len(delivered))
    return expected


SIGNAL_LATENESS = 120.0
"""Allowed lateness (``CX_ALLOWED_LATENESS``) that facts decided "when time passes" wait for."""


def _signal_id(signal_type: str, entity_id: str, *fact: str) -> str:
    import hashlib

    material = "\0".join((signal_type, entity_id, *fact)).encode()
    return "sig-" + hashlib.sha256(material).hexdigest()[:40]


def _utc_text(t: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(t, UTC).isoformat()


def _signal(
    signal_type: str,
    key_field: str,
    entity: str,
    t: float,
    channel: str,
    customer,
    fact: tuple = (),
    **fields,
) -> dict:
    signal = {
        "signal_id": _signal_id(signal_type, entity, *fact),
        "signal_type": signal_type,
        "occurred_at": _utc_text(t),
        "channel": channel,
        "schema_version": 1,
        key_field: entity,
        **fields,
    }
    if customer is not None:
        signal["customer_id"] = customer
    return signal


def _first_customer(events: list[dict]):
    named = sorted(
        (epoch(e["occurred_at"]), e["customer_id"]) for e in events if e.get("customer_id")
    )
    return named[0][1] if named else None


def _cart_signals(events: list[dict], now: float, timeout: float, lateness: float) -> list[dict]:
    from decimal import Decimal

    carts: dict[str, dict] = {}
    placed: set[str] = set()
    for event in events:
        kind = event["event_type"]
        if kind == "order.placed" and event["order_id"] not in placed:
            placed.add(event["order_id"])
            if event.get("cart_id"):
                carts.setdefault(event["cart_id"], {"events": [], "orders": []})["orders"].append(
                    (epoch(event["occurred_at"]), event["order_id"])
                )
        elif kind.startswith(("cart.", "checkout.")):
            carts.setdefault(event["cart_id"], {"events": [], "orders": []})["events"].append(event)
    signals = []
    for cart_id, cart in carts.items():
        added = sorted(
            (epoch(e["occurred_at"]), e.get("channel", "web"))
            for e in cart["events"]
            if e["event_type"] == "cart.item_added"
        )
        if not added:
            continue
        channel = added[0][1]
        times = sorted(epoch(e["occurred_at"]) for e in cart["events"])
        idle = next(
            times[i] + timeout
            for i in range(len(times))
            if i == len(times) - 1 or times[i + 1] - times[i] > timeout
        )
        orders = sorted(cart["orders"])
        if any(t <= idle for t, _ in orders) or now < idle + lateness:
            continue  # converted, or not decided yet
        before = [e for e in cart["events"] if epoch(e["occurred_at"]) <= idle]
        customer = _first_customer(before)
        steps = sorted(
            (epoch(e["occurred_at"]), e["step"])
            for e in before
            if e["event_type"] == "checkout.step_completed"
        )
        last_step = steps[-1][1] if steps else "none"
        changes = sorted(
            (
                (
                    epoch(e["occurred_at"]),
                    e["event_type"] == "cart.item_removed",
                    e["product_id"],
                    i,
                )
                for i, e in enumerate(before)
                if e["event_type"] in ("cart.item_added", "cart.item_removed")
            ),
        )  # same time: additions first
        held: dict[str, dict] = {}
        for _, removal, product, i in changes:
            line = held.setdefault(product, {"quantity": 0})
            if removal:
                line["quantity"] = max(0, line["quantity"] - before[i]["quantity"])
            else:
                line["quantity"] += before[i]["quantity"]
                line["unit_price"] = str(before[i]["unit_price"])
                line["currency"] = before[i]["currency"]
        additions = [before[c[3]]["currency"] for c in changes if not c[1]]
        currency = additions[0] if additions else "XXX"  # idle before the first addition
        items = [
            {"product_id": p, **line} for p, line in sorted(held.items()) if line["quantity"] > 0
        ]
        value = sum(
            (Decimal(i["unit_price"]) * i["quantity"] for i in items if i["currency"] == currency),
            Decimal(0),
        )
        signals.append(
            _signal(
                "cart.abandoned",
                "cart_id",
                cart_id,
                idle,
                channel,
                customer,
                last_step=last_step,
                items=items,
                value=str(value),
                currency=currency,
            )
        )
        if orders:
            signals.append(
                _signal(
                    "cart.recovered",
                    "cart_id",
                    cart_id,
                    orders[0][0],
                    channel,
                    customer,
                    order_id=orders[0][1],
                )
            )
    return signals


def _late_delivery_signals(events: list[dict], now: float, lateness: float) -> list[dict]:
    orders: dict[str, list[dict]] = {}
    for event in events:
        if event["event_type"] in ("order.placed", "order.shipped", "order.delivered"):
            orders.setdefault(event["order_id"], []).append(event)
    signals = []
    for order_id, mine in orders.items():
        placed = [e for e in mine if e["event_type"] == "order.placed"]
        shipments = sorted(
            (epoch(e["occurred_at"]), epoch(e["promised_delivery_at"]), e.get("channel", "web"))
            for e in mine
            if e["event_type"] == "order.shipped"
        )
        deliveries = [epoch(e["occurred_at"]) for e in mine if e["event_type"] == "order.delivered"]
        customer = _first_customer(mine)
        for i, (_, promise, ship_channel) in enumerate(shipments):
            replaced = any(later[0] <= promise for later in shipments[i + 1 :])
            if replaced or now < promise + lateness or any(d <= promise for d in deliveries):
                continue
            channel = placed[0].get("channel", "web") if placed else ship_channel
            text = _utc_text(promise)
            signals.append(
                _signal(
                    "order.delivery_late",
                    "order_id",
                    order_id,
                    promise,
                    channel,
                    customer,
                    (text,),
                    promised_delivery_at=text,
                )
            )
    return list({s["signal_id"]: s for s in signals}.values())


def _detractor_signals(events: list[dict]) -> list[dict]:
    return [
        _signal(
            "survey.detractor",
            "response_id",
            e["response_id"],
            epoch(e["occurred_at"]),
            e.get("channel", "web"),
            e.get("customer_id"),
            survey=e["survey"],
            score=e["score"],
            touchpoint=e.get("touchpoint"),
        )
        for e in events
        if e["event_type"] == "survey.submitted"
        and (
            (e["survey"] == "nps" and e["score"] <= 6)
            or (e["survey"] == "csat" and e["score"] <= 2)
        )
    ]


def signal_expectations(
    events: list[dict],
    now: float,
    timeout: float = 1800.0,
    lateness: float = SIGNAL_LATENESS,
    longest_window: float = max(WINDOWS.values()),
) -> dict[str, dict]:
    """{signal_id: signal} the contract's "Signals" section calls for, as of ``now``.

    Every event is known (arrival order never matters). Events older than the longest window
    are late: they are part of no entity's history, so they decide no cart, delivery or SLA
    fact, but a late detractor response is still a detractor ("Signals are decided for every
    event, backfills included"). Times are written in UTC ``isoformat``, the text a late
    delivery's ``signal_id`` is made from.
    """
    seen = first_seen(events)
    fresh = [e for e in seen if now - epoch(e["occurred_at"]) <= longest_window]
    signals = (
        _cart_signals(fresh, now, timeout, lateness)
        + _late_delivery_signals(fresh, now, lateness)
        + _detractor_signals(seen)
    )
    return {s["signal_id"]: s for s in signals}


# -- SLAs in business hours (CONTRACT.md "SLA and business hours") -------------------------------
SLA_KINDS = ("first_response", "resolution")
AT_RISK_HORIZON = 3600.0
_DUE_MEMO: dict[tuple, float] = {}
"""Brute-force due times already walked (tests replay the same tickets many times)."""


class BruteCalendar:
    """Business time minute by minute from a policy dict (parsed YAML): slow and obvious.

    Exact for minute-aligned instants: every minute is wholly inside or outside the hours.
    """

    def __init__(self, policy: dict) -> None:
        from zoneinfo import ZoneInfo

        self.zone = ZoneInfo(policy.get("timezone", "UTC"))
        self.hours = policy.get("business_hours")
        self.holidays = {str(day) for day in policy.get("holidays", [])}
        self.targets = policy["targets"]

    def is_business_minute(self, t: float) -> bool:
        if self.hours is None:
            return True
        local = datetime.fromtimestamp(t, self.zone)
        if local.date().isoformat() in self.holidays:
            return False
        day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
        minute = local.hour * 60 + local.minute
        for text in self.hours.get(day, []):
            start, end = (int(p[:2]) * 60 + int(p[3:]) for p in text.split("-"))
            if start <= minute < end:
                return True
        return False

    def due(self, opened: float, seconds: float) -> float:
        key = (repr(self.zone), repr(self.hours), repr(sorted(self.holidays)), opened, seconds)
        if key not in _DUE_MEMO:
            _DUE_MEMO[key] = self._walk_to_due(opened, seconds)
        return _DUE_MEMO[key]

    def _walk_to_due(self, opened: float, seconds: float) -> float:
        t, left = opened, seconds
        while left > 0:
            if self.is_business_minute(t):
                left -= 60
            t += 60
        return t

    def between(self, start: float, end: float) -> float:
        total, t = 0.0, start
        while t < end:
            if self.is_business_minute(t):
                total += 60
            t += 60
        return total


def in_coarse_window(t: float, now: float, length: float) -> bool:
    """The window with its lower edge coarsened to a whole bucket, as the contract allows
    (10 s buckets for 5m, 1 min above)."""
    size = 10.0 if length <= 300 else 60.0
    return (now - length) // size * size <= t <= now


def sla_timeline(
    arrivals: list[tuple[float, dict]],
    ticks: list[float],
    policy: dict,
    lateness: float,
    quiet: float,
) -> dict:
    """Replay arrivals and clock ticks in time order, the contract's SLA rules verbatim.

    A breach is decided at a tick past due + lateness, once no event of the ticket arrived for
    the quiet period (as cart decisions wait).

    Returns ``tickets`` (id -> state), ``met``/``breached`` lists of (channel, kind, priority,
    observed at), ``business`` (kind -> [(channel, observed at, seconds)]) and ``signals``.
    """
    calendar = BruteCalendar(policy)
    hours_set = policy.get("business_hours") is not None
    tickets: dict[str, dict] = {}
    early: dict[str, list[dict]] = {}
    seen: set[str] = set()
    last_arrival: dict[str, float] = {}
    result: dict = {"met": [], "breached": [], "business": {"frt": [], "ttr": []}, "signals": []}

    def settle(tid: str, ticket: dict, kind: str, met: bool | None) -> None:
        ticket["outcome"][kind] = "met" if met else ("none" if met is None else "breached")
        labels = (ticket["channel"], kind, ticket["priority"])
        if met:
            result["met"].append((*labels, ticket["when"][kind]))
        elif met is False:
            result["breached"].append((*labels, ticket["due"][kind]))
            result["signals"].append((tid, kind, ticket["priority"], ticket["due"][kind]))

    def apply(tid: str, ticket: dict, event: dict) -> None:
        kind, t = event["event_type"], epoch(event["occurred_at"])
        if kind == "ticket.agent_replied" and ticket["reply"] is None:
            ticket["reply"] = t
            if hours_set:
                result["business"]["frt"].append(
                    (ticket["channel"], t, calendar.between(ticket["opened"], t))
                )
            if ticket["outcome"]["first_response"] is None:
                ticket["when"]["first_response"] = t
                settle(tid, ticket, "first_response", t <= ticket["due"]["first_response"])
        elif kind == "ticket.resolved" and ticket["open"]:
            ticket["open"] = False
            if ticket["resolution"] is None:
                ticket["resolution"] = t
                if hours_set:
                    result["business"]["ttr"].append(
                        (ticket["channel"], t, calendar.between(ticket["opened"], t))
                    )
                if ticket["outcome"]["first_response"] is None:
                    in_time = t <= ticket["due"]["first_response"]
                    settle(tid, ticket, "first_response", None if in_time else False)
                if ticket["outcome"]["resolution"] is None:
                    ticket["when"]["resolution"] = t
                    settle(tid, ticket, "resolution", t <= ticket["due"]["resolution"])
        elif kind == "ticket.reopened" and not ticket["open"]:
            ticket["open"] = True

    timeline = [(t, 0, event) for t, event in arrivals] + [(t, 1, None) for t in ticks]
    for now, is_tick, event in sorted(timeline, key=lambda item: (item[0], item[1])):
        if is_tick:
            for tid, ticket in tickets.items():
                for kind in SLA_KINDS:
                    pending = ticket["outcome"][kind] is None
                    settled_down = now - last_arrival[tid] >= quiet
                    if pending and settled_down and now > ticket["due"][kind] + lateness:
                        settle(tid, ticket, kind, False)
            continue
        assert event is not None
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        if now - epoch(event["occurred_at"]) > 86_400:
            continue  # late: not aggregated
        tid = event["ticket_id"]
        last_arrival[tid] = now
        if event["event_type"] == "ticket.opened":
            if tid in tickets:
                continue
            opened = epoch(event["occurred_at"])
            priority = event["priority"]
            tickets[tid] = ticket = {
                "opened": opened,
                "channel": event.get("channel", "web"),
                "priority": priority,
                "open": True,
                "reply": None,
                "resolution": None,
                "due": {
                    kind: calendar.due(opened, float(calendar.targets[kind][priority]))
                    for kind in SLA_KINDS
                },
                "outcome": dict.fromkeys(SLA_KINDS),
                "when": {},
            }
            for held in early.pop(tid, []):
                apply(tid, ticket, held)
        elif tid in tickets:
            apply(tid, tickets[tid], event)
        else:
            early.setdefault(tid, []).append(event)
    result["tickets"] = tickets
    return result


def sla_expectations(timeline: dict, now: float, windows: dict[str, float]) -> dict:
    """{(metric, frozenset(labels)): value} of the SLA families at ``now`` (after a tick)."""
    expected: dict = {}
    channels = {c for c, *_ in timeline["met"] + timeline["breached"]}
    for window, length in windows.items():
        for channel in channels:
            for kind in SLA_KINDS:
                base = {"window": window, "channel": channel, "kind": kind}
                totals = {}
                for name, rows in (("cx_sla_met", "met"), ("cx_sla_breached", "breached")):
                    totals[name] = 0
                    for priority in ("low", "normal", "high", "urgent"):
                        n = sum(
                            1
                            for c, k, p, t in timeline[rows]
                            if (c, k, p) == (channel, kind, priority)
                            and in_coarse_window(t, now, length)
                        )
                        if n:
                            expected[(name, frozenset({**base, "priority": priority}.items()))] = n
                        totals[name] += n
                decided = totals["cx_sla_met"] + totals["cx_sla_breached"]
                if decided:
                    expected[("cx_sla_attainment_ratio", frozenset(base.items()))] = (
                        totals["cx_sla_met"] / decided
                    )
        for name, rows in (
            ("cx_first_response_business_seconds", timeline["business"]["frt"]),
            ("cx_ttr_business_seconds", timeline["business"]["ttr"]),
        ):
            for channel in {c for c, _, _ in rows}:
                values = [
                    v for c, t, v in rows if c == channel and in_coarse_window(t, now, length)
                ]
                for q in ("0.5", "0.9", "0.99"):
                    if values:
                        labels = {"window": window, "channel": channel, "quantile": q}
                        expected[(name, frozenset(labels.items()))] = rank_quantile(
                            values, float(q)
                        )
    for ticket in timeline["tickets"].values():
        for kind in SLA_KINDS:
            due = ticket["due"][kind]
            awaited = ticket["open"] and ticket["outcome"][kind] is None
            if awaited and due - AT_RISK_HORIZON <= now <= due:
                labels = {"channel": ticket["channel"], "kind": kind}
                key = ("cx_tickets_at_risk", frozenset(labels.items()))
                expected[key] = expected.get(key, 0) + 1
                labels["priority"] = ticket["priority"]
                key = ("cx_tickets_at_risk_by_priority", frozenset(labels.items()))
                expected[key] = expected.get(key, 0) + 1
    return expected
