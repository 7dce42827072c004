"""Signals decided by the carts, orders and surveys handlers (CONTRACT.md "Signals").

Driven through the real PartitionProcessors (records, links, checkpoints; see SignalShop) and
compared with ``tests.oracle.signal_expectations``, which knows every event up front: arrival
order, duplicates and crashes must not change which facts are signalled, nor their content.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.carts import Cart
from pipeline.domain.orders import Order
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.links import decode_link, encode_link
from schemas.signals import SIGNAL_ADAPTER, signal_id
from tests.oracle import signal_expectations
from tests.unit.domain_support import SETTINGS, SignalShop, fold

T0 = 1_800_000_000.0
END = T0 + 8 * 3600  # every fact of the stories below is decided by then
TIMEOUT, LATENESS, QUIET = (
    SETTINGS.abandonment_timeout,
    SETTINGS.allowed_lateness,
    SETTINGS.quiet_period,
)


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def event(kind: str, t: float, channel: str = "web", customer: str | None = None, **fields) -> dict:
    body = {
        "event_id": uuid.uuid4().hex,
        "event_type": kind,
        "occurred_at": rfc3339(t),
        "schema_version": 1,
        "source": "test",
        "channel": channel,
        **fields,
    }
    if customer is not None:
        body["customer_id"] = customer
    return body


def added(cart: str, t: float, product: str = "p1", quantity: int = 1, price: str = "9.99", **kw):
    return event(
        "cart.item_added",
        t,
        cart_id=cart,
        product_id=product,
        quantity=quantity,
        unit_price=price,
        currency=kw.pop("currency", "EUR"),
        **kw,
    )


def removed(cart: str, t: float, product: str = "p1", quantity: int = 1, **kw) -> dict:
    return event("cart.item_removed", t, cart_id=cart, product_id=product, quantity=quantity, **kw)


def placed(order: str, t: float, cart: str | None = None, **kw) -> dict:
    fields = {"cart_id": cart} if cart else {}
    return event("order.placed", t, order_id=order, total="10", currency="EUR", **fields, **kw)


def shipped(order: str, t: float, promise: float, **kw) -> dict:
    return event("order.shipped", t, order_id=order, promised_delivery_at=rfc3339(promise), **kw)


def delivered(order: str, t: float, **kw) -> dict:
    return event("order.delivered", t, order_id=order, **kw)


def survey(t: float, kind: str, score: int, **kw) -> dict:
    return event(
        "survey.submitted", t, response_id=uuid.uuid4().hex, survey=kind, score=score, **kw
    )


# -- stories ----------------------------------------------------------------------------------
def random_story(rng: random.Random, carts: int = 12, orders: int = 10, surveys: int = 15):
    """Events of every signal's edge cases, in event-time order (times within [T0, T0+6h])."""
    events: list[dict] = []
    channels = ["web", "mobile_app", "store"]
    for i in range(carts):
        cart, start = f"cart-{i}", T0 + rng.uniform(0, 4 * 3600)
        channel, customer = rng.choice(channels), rng.choice([None, f"cu{i}"])
        t = start
        for _ in range(rng.randint(1, 5)):
            kind = rng.choice(["add", "add", "remove", "start", "step"])
            product = rng.choice(["p1", "p2", "p3"])
            who = customer if rng.random() < 0.5 else None
            if kind == "add":
                price, currency = (
                    rng.choice(["1.50", "9.99", "0"]),
                    rng.choice(["EUR"] * 4 + ["USD"]),
                )
                events.append(
                    added(
                        cart,
                        t,
                        product,
                        rng.randint(1, 3),
                        price,
                        channel=channel,
                        customer=who,
                        currency=currency,
                    )
                )
            elif kind == "remove":
                events.append(removed(cart, t, product, rng.randint(1, 3), customer=who))
            elif kind == "start":
                events.append(event("checkout.started", t, cart_id=cart))
            else:
                step = rng.choice(["shipping", "payment", "Odd Step"])
                events.append(event("checkout.step_completed", t, cart_id=cart, step=step))
            t += rng.choice([5.0, 60.0, 600.0, TIMEOUT + 60])  # sometimes a new segment
        fate = rng.choice(["convert", "recover", "none", "two orders"])
        if fate == "convert":
            events.append(placed(f"ord-{cart}", t + rng.uniform(0, TIMEOUT - 10), cart))
        elif fate in ("recover", "two orders"):
            events.append(placed(f"ord-{cart}", t + TIMEOUT + 3600, cart))
            if fate == "two orders":
                events.append(placed(f"ord2-{cart}", t + TIMEOUT + 1800, cart))
    for i in range(orders):
        order, t = f"o-{i}", T0 + rng.uniform(0, 3 * 3600)
        customer = rng.choice([None, f"cu-o{i}"])
        if rng.random() < 0.8:
            events.append(placed(order, t, channel=rng.choice(channels), customer=customer))
        promise = t + 3600
        events.append(shipped(order, t + 60, promise, channel="email"))
        if rng.random() < 0.3:  # a re-promise, before or after the first one passed
            events.append(shipped(order, t + rng.choice([600, 4000]), promise + 1800))
        if rng.random() < 0.7:
            events.append(delivered(order, promise + rng.choice([-300, 0, 1, 900, 2400])))
    for _ in range(surveys):
        kind, score = rng.choice(
            [("nps", rng.randint(0, 10)), ("csat", rng.randint(1, 5)), ("ces", rng.randint(1, 7))]
        )
        touch = rng.choice([None, "checkout", "delivery"])
        extra = {"touchpoint": touch} if touch else {}
        events.append(
            survey(
                T0 + rng.uniform(0, 6 * 3600),
                kind,
                score,
                customer=rng.choice([None, "cu"]),
                channel=rng.choice(channels),
                **extra,
            )
        )
    return sorted(events, key=lambda e: e["occurred_at"])


def run_live(events: list[dict], rng: random.Random, crashes: int = 0) -> SignalShop:
    """Events arrive up to 90 s after they happen (within the allowed lateness), in any order,
    some twice; the clock ticks every 20 s; the worker dies ``crashes`` times on the way."""
    arrivals = sorted(
        (
            (e, t + rng.uniform(0, 90))
            for e in events
            for t in [epoch_of(e)]
            for _ in range(2 if rng.random() < 0.1 else 1)
        ),
        key=lambda a: a[1],
    )
    crash_at = set(rng.sample(range(int((END - T0) / 20)), crashes))
    shop, i = SignalShop(), 0
    for n, now in enumerate(T0 + 20 * k for k in range(int((END - T0) / 20) + 1)):
        while i < len(arrivals) and arrivals[i][1] <= now:
            shop.arrive(arrivals[i][0])
            i += 1
        shop.step(
            now, crash_after=rng.choice(["orders", "surveys", "carts"]) if n in crash_at else None
        )
    shop.step(END + QUIET + 1)
    return shop


def run_backfill(events: list[dict], rng: random.Random, crash: bool) -> SignalShop:
    """All events arrive long after they happened, shuffled, in a few batches (a backfill)."""
    shuffled = events + rng.sample(events, len(events) // 10)  # with some duplicates
    rng.shuffle(shuffled)
    shop, now = SignalShop(), END
    for k in range(0, len(shuffled), 17):
        for e in shuffled[k : k + 17]:
            shop.arrive(e)
        now += 0.1  # a burst: within the quiet period
        shop.step(now, crash_after="carts" if crash and k == 34 else None)
    for later in (now + QUIET + 1, now + 2 * QUIET + 2):
        shop.step(later, crash_after="carts" if crash and later > now + QUIET + 1 else None)
    shop.step(now + 3 * QUIET + 3)
    return shop


def epoch_of(e: dict) -> float:
    return datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")).timestamp()


def assert_signals_match(shop: SignalShop, events: list[dict], now: float) -> None:
    want = signal_expectations(events, now, TIMEOUT, LATENESS)
    got: dict[str, list[Any]] = {}
    for signal in shop.sent:
        got.setdefault(signal["signal_id"], []).append(SIGNAL_ADAPTER.validate_python(signal))
    assert set(got) == set(want), (
        f"missing {[want[s] for s in set(want) - set(got)]}, "
        f"extra {[got[s][0] for s in set(got) - set(want)]}"
    )
    for sid, copies in got.items():
        assert all(c == SIGNAL_ADAPTER.validate_python(want[sid]) for c in copies), (
            copies,
            want[sid],
        )
        if shop.crashes == 0:
            assert len(copies) == 1, f"{sid} sent {len(copies)} times without a crash"


# -- against the oracle -----------------------------------------------------------------------
@given(seed=st.integers(0, 10**6), crashes=st.sampled_from([0, 0, 1, 3]))
@settings(max_examples=15, deadline=None)
def test_live_arrival_signals_exactly_the_oracles_facts(seed, crashes):
    rng = random.Random(seed)
    events = random_story(rng)
    shop = run_live(events, rng, crashes)
    assert_signals_match(shop, events, END + QUIET + 1)


@given(seed=st.integers(0, 10**6), crash=st.booleans())
@settings(max_examples=15, deadline=None)
def test_shuffled_backfill_signals_exactly_the_oracles_facts(seed, crash):
    rng = random.Random(seed)
    events = random_story(rng)
    shop = run_backfill(events, rng, crash)
    assert_signals_match(shop, events, END + 10)


def test_the_oracle_check_can_fail():
    rng = random.Random(3)
    events = random_story(rng)
    shop = run_backfill(events, rng, crash=False)
    shop.sent = [s for s in shop.sent if s["signal_type"] != "order.delivery_late"]
    with pytest.raises(AssertionError):
        assert_signals_match(shop, events, END + 10)


# -- each rule --------------------------------------------------------------------------------
def story_signals(arrivals: list[tuple[float, dict]], until: float) -> list[dict]:
    """Signals of events arriving at the given wall times, the clock ticking every 10 s."""
    shop, pending = SignalShop(), sorted(arrivals, key=lambda a: a[0])
    now = min(a[0] for a in arrivals)
    while now <= until:
        while pending and pending[0][0] <= now:
            shop.arrive(pending.pop(0)[1])
        shop.step(now)
        now += 10
    for signal in shop.sent:
        SIGNAL_ADAPTER.validate_python(signal)
    return shop.sent


def test_a_delivery_arriving_late_but_made_in_time_prevents_the_signal():
    promise = T0 + 3600
    sent = story_signals(
        [
            (T0, placed("o1", T0)),
            (T0 + 60, shipped("o1", T0 + 60, promise)),
            (promise + 100, delivered("o1", promise - 5)),  # arrives 100 s after the promise
        ],
        promise + 600,
    )
    assert sent == []


def test_a_delivery_after_the_promise_is_signalled_at_the_promise():
    promise = T0 + 3600
    sent = story_signals(
        [
            (T0, placed("o1", T0, channel="mobile_app", customer="alice")),
            (T0 + 60, shipped("o1", T0 + 60, promise)),
            (promise + 30, delivered("o1", promise + 1)),
        ],
        promise + 600,
    )
    assert len(sent) == 1
    signal = sent[0]
    assert signal["signal_type"] == "order.delivery_late"
    assert signal["order_id"] == "o1" and signal["channel"] == "mobile_app"
    assert signal["customer_id"] == "alice"
    assert (
        epoch_of(signal)
        == promise
        == datetime.fromisoformat(signal["promised_delivery_at"]).timestamp()
    )
    assert signal["signal_id"] == signal_id(
        "order.delivery_late", "o1", rfc3339(promise)[:-1] + "+00:00"
    )


def test_the_late_signal_waits_for_the_allowed_lateness():
    promise = T0 + 3600
    shop = SignalShop()
    shop.arrive(shipped("o1", T0, promise))
    shop.step(T0)
    shop.step(promise + LATENESS - 1)
    assert shop.sent == []
    shop.step(promise + LATENESS)
    assert [s["signal_type"] for s in shop.sent] == ["order.delivery_late"]


def test_a_re_promise_before_the_deadline_replaces_it_one_after_is_a_new_fact():
    first, second = T0 + 3600, T0 + 7200
    replaced = story_signals(
        [(T0, shipped("o1", T0, first)), (T0 + 600, shipped("o1", T0 + 600, second))],
        second + 600,
    )
    assert [s["promised_delivery_at"] for s in replaced] == [
        datetime.fromtimestamp(second, UTC).isoformat()
    ]
    both = story_signals(
        [(T0, shipped("o1", T0, first)), (first + 60, shipped("o1", first + 60, second))],
        second + 600,
    )
    assert len({s["signal_id"] for s in both}) == 2


def test_detractors_are_nps_0_to_6_and_csat_1_to_2():
    responses = [
        survey(T0, "nps", 6, touchpoint="delivery", customer="bob"),
        survey(T0, "nps", 7),
        survey(T0, "csat", 2, channel="chat"),
        survey(T0, "csat", 3),
        survey(T0, "ces", 1),
    ]
    sent = story_signals([(T0 + 1, r) for r in responses], T0 + 1)
    assert [(s["survey"], s["score"]) for s in sent] == [("nps", 6), ("csat", 2)]
    assert sent[0]["response_id"] == responses[0]["response_id"]
    assert sent[0]["touchpoint"] == "delivery" and sent[0]["customer_id"] == "bob"
    assert sent[1]["channel"] == "chat" and "customer_id" not in sent[1]
    assert epoch_of(sent[0]) == T0


def test_a_backfilled_detractor_too_old_for_any_window_is_still_signalled():
    """CONTRACT.md "Signals": decided for every event, backfills included; "Windows": an event
    older than the longest window is counted as late and not aggregated."""
    arrival = T0 + 3 * 86_400
    old = [
        survey(T0, "nps", 2, customer="dora"),  # three days old on arrival
        survey(T0 + 60, "csat", 1),
        survey(T0 + 120, "nps", 9),
        event(
            "cart.item_added",
            T0,
            cart_id="old-cart",
            product_id="p",
            quantity=1,
            unit_price="1",
            currency="EUR",
        ),
    ]
    shop = SignalShop()
    for body in old:
        shop.arrive(body)
    shop.step(arrival)
    shop.step(arrival + TIMEOUT + LATENESS + QUIET + 10)
    assert {(s["signal_type"], s.get("score")) for s in shop.sent} == {
        ("survey.detractor", 2),
        ("survey.detractor", 1),
    }
    want = signal_expectations(old, arrival)
    assert {s["signal_id"]: s for s in shop.sent} == want
    assert shop.sent[0]["customer_id"] == "dora" and epoch_of(shop.sent[0]) == T0
    windowed, totals = fold([Checkpoint.decode(c) for c in shop.checkpoints["surveys"]])
    assert windowed == {}, "a late response reached a window"
    assert totals[("late", ("cx.surveys",))] == 3


def test_an_abandoned_cart_lists_what_is_still_in_it():
    cart = [
        added("c", T0, "p1", 2, "3.50", channel="mobile_app"),
        added("c", T0 + 10, "p2", 1, "10", customer="carol"),
        removed("c", T0 + 20, "p1", 1),
        removed("c", T0 + 30, "p2", 5),
        event("checkout.started", T0 + 40, cart_id="c"),
        event("checkout.step_completed", T0 + 50, cart_id="c", step="shipping"),
    ]
    shuffled = random.Random(1).sample(cart, len(cart))
    sent = story_signals([(T0 + 60, e) for e in shuffled], T0 + 50 + TIMEOUT + LATENESS + 20)
    assert len(sent) == 1
    signal = sent[0]
    assert signal["signal_type"] == "cart.abandoned" and signal["cart_id"] == "c"
    assert signal["items"] == [
        {"product_id": "p1", "quantity": 1, "unit_price": "3.50", "currency": "EUR"}
    ]
    assert signal["value"] == "3.50" and signal["currency"] == "EUR"
    assert signal["last_step"] == "shipping" and signal["channel"] == "mobile_app"
    assert signal["customer_id"] == "carol"
    assert epoch_of(signal) == T0 + 50 + TIMEOUT


@given(seed=st.integers(0, 10**6), clicks=st.integers(60, 300))
@settings(max_examples=10, deadline=None)
def test_a_cart_of_many_clicks_lists_what_is_still_in_it(seed, clicks):
    """A storefront sending one event per +/- click: far more item events than a cart keeps,
    arriving in order, removals past what is held included; the signal lists the oracle's items."""
    rng = random.Random(seed)
    events = [
        added("c", T0 + 7 * i, product, rng.randint(1, 3), rng.choice(["2.00", "3.50"]))
        if rng.random() < 0.55
        else removed("c", T0 + 7 * i, product, rng.randint(1, 3))
        for i in range(clicks)
        for product in [rng.choice(["p1", "p2", "p3"])]
    ]
    events.insert(0, added("c", T0 - 1, "p0", 1, "1.00"))  # never removed: never empty
    last = epoch_of(events[-1])
    shop = SignalShop()
    for e in events:
        shop.arrive(e)
        shop.step(epoch_of(e) + 1)
    now = last + TIMEOUT + LATENESS + QUIET + 10
    shop.step(now)
    assert [s["signal_type"] for s in shop.sent] == ["cart.abandoned"]
    assert_signals_match(shop, events, now)


def test_timestamps_at_the_ends_of_time_are_signalled_or_rejected_never_a_crash():
    """A timestamp whose instant falls outside years 1-9999 in UTC crashed the worker when a
    signal wrote it back; now it is rejected at the door, and the last valid instants work."""
    earliest = "0001-01-01T00:00:00Z"
    year_zero = "0001-01-01T00:00:00+23:59"
    shop = SignalShop()
    for when in (earliest, year_zero):
        shop.arrive({**survey(T0, "nps", 0), "occurred_at": when})
        shop.arrive({**shipped(f"o-{when}", T0, T0), "promised_delivery_at": when})
    shop.step(T0 + 10)
    shop.step(T0 + LATENESS + QUIET + 20)
    assert sorted((s["signal_type"], s["occurred_at"]) for s in shop.sent) == [
        ("order.delivery_late", "0001-01-01T00:00:00+00:00"),
        ("survey.detractor", "0001-01-01T00:00:00+00:00"),
    ]
    rejected = [r.reason for proc in shop.procs.values() for r in proc.rejected]
    assert rejected == ["invalid_timestamp", "invalid_timestamp"]


@pytest.mark.parametrize("step", ["Shipping Info", "payment-details", "2", "café"])
def test_the_last_step_is_named_as_the_producer_named_it(step):
    """Segment's ``step_name`` ("Shipping Info") or a numbered step reaches the signal and the
    ``cx_checkout_abandoned`` label unchanged (CONTRACT.md: "by their last completed step")."""
    cart = [
        added("c", T0),
        event("checkout.started", T0 + 10, cart_id="c"),
        event("checkout.step_completed", T0 + 20, cart_id="c", step=step),
    ]
    shop = SignalShop()
    for body in cart:
        shop.arrive(body)
    shop.step(T0 + 30)
    shop.step(T0 + 20 + TIMEOUT + LATENESS + QUIET + 10)
    assert [s["last_step"] for s in shop.sent] == [step]
    windowed, _ = fold([Checkpoint.decode(c) for c in shop.checkpoints["carts"]])
    assert {labels for (name, labels), _ in windowed if name == "checkout_abandoned"} == {
        ("web", step)
    }


def test_an_order_for_an_abandoned_cart_is_a_recovery_with_its_order_id():
    idle = T0 + TIMEOUT
    sent = story_signals(
        [
            (T0, added("c", T0)),
            (idle + 600, placed("late-order", idle + 600, "c")),
            (idle + 700, placed("later-order", idle + 700, "c")),
        ],
        idle + 1000,
    )
    assert [s["signal_type"] for s in sent] == ["cart.abandoned", "cart.recovered"]
    assert sent[1]["order_id"] == "late-order" and epoch_of(sent[1]) == idle + 600


def test_a_converted_cart_signals_nothing():
    sent = story_signals(
        [(T0, added("c", T0)), (T0 + 60, placed("o", T0 + 60, "c"))], T0 + 3 * TIMEOUT
    )
    assert sent == []


def test_a_crash_after_sending_before_the_checkpoint_re_sends_the_same_ids():
    shop = SignalShop()
    shop.arrive(added("c", T0))
    shop.arrive(survey(T0, "nps", 0))
    shop.step(T0)
    shop.step(T0 + TIMEOUT + LATENESS + QUIET, crash_after="carts")
    shop.step(T0 + TIMEOUT + LATENESS + QUIET + 1)
    ids = [s["signal_id"] for s in shop.sent]
    assert sorted(set(ids)) == sorted(
        {signal_id("cart.abandoned", "c")}
        | {s["signal_id"] for s in shop.sent if s["signal_type"] == "survey.detractor"}
    )
    assert ids.count(signal_id("cart.abandoned", "c")) == 2  # once before the crash, once after


# -- compatibility ----------------------------------------------------------------------------
def test_links_carry_the_order_id_and_old_links_still_decode():
    assert decode_link(encode_link(12.5, "order-7")) == (12.5, "order-7")
    assert decode_link(orjson.dumps({"t": 3.0, "order": "event-id"})) == (3.0, "event-id")
    assert orjson.loads(encode_link(1.0, "o"))["order"] == "o"  # what older workers read


def test_entity_state_written_before_signals_still_restores():
    old_cart = ["web", T0, [[T0, T0]], [], [], T0, None, None]
    assert Cart.from_wire(old_cart).items == [] and Cart.from_wire(old_cart).customer is None
    old_order = ["web", "EUR", T0 + 3600, False, T0]
    assert Order.from_wire(old_order).shipments == []
