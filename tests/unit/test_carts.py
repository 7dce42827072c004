"""Cart outcomes by event time, whatever the arrival order (CONTRACT.md "Cart abandonment")."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregates.observations import Observations
from pipeline.domain.carts import MAX_TIMERS_PER_TICK, CartHandler, add_activity, step_label
from schemas import decode_record

TIMEOUT, LATENESS, QUIET = 1800.0, 120.0, 5.0
T0 = 1_800_000_000.0


def cart_event(cart_id: str, kind: str, t: float, channel: str = "web", step: str | None = None):
    body = {
        "event_id": uuid.uuid4().hex,
        "event_type": kind,
        "occurred_at": datetime.fromtimestamp(t, UTC).isoformat(),
        "schema_version": 1,
        "source": "test",
        "channel": channel,
        "cart_id": cart_id,
    }
    if kind in ("cart.item_added", "cart.item_removed"):
        body.update(product_id="p1", quantity=1)
    if kind == "cart.item_added":
        body.update(unit_price="9.99", currency="EUR")
    if kind == "checkout.step_completed":
        body["step"] = step
    return decode_record("carts", cart_id.encode(), orjson.dumps(body), now=t + 10**9)


def oracle(carts: dict[str, dict]) -> list[tuple[str, str, float]]:
    """(channel, outcome, time) per cart, straight from the contract's definition."""
    results = []
    for cart in carts.values():
        added = sorted((t, ch) for kind, t, ch, _ in cart["events"] if kind == "cart.item_added")
        if not added:
            continue
        channel = added[0][1]
        times = sorted(t for _, t, _, _ in cart["events"])
        idle = next(
            times[i] + TIMEOUT
            for i in range(len(times))
            if i == len(times) - 1 or times[i + 1] - times[i] > TIMEOUT
        )
        orders = sorted(cart["orders"])
        converting = [o for o in orders if o <= idle]
        if converting:
            results.append((channel, "converted", converting[0]))
            continue
        results.append((channel, "abandoned", idle))
        checkout = [
            (t, step)
            for kind, t, _, step in cart["events"]
            if kind.startswith("checkout.") and t <= idle
        ]
        if checkout:
            steps = [(t, s) for t, s in checkout if s is not None]
            last = max(steps)[1] if steps else None
            results.append((channel, f"checkout:{step_label(last)}", idle))
        if orders:
            results.append((channel, "recovered", orders[0]))
    return sorted(results)


def outcomes(out: Observations) -> list[tuple[str, str, float]]:
    """Decode the handler's observations into the oracle's shape (10 s bucket precision)."""
    got = []
    for ((name, labels), bucket), value in out.delta.windowed.items():
        for _ in range(int(value)):
            if name == "carts":
                got.append((labels[0], labels[1], bucket))
            elif name == "checkout_abandoned":
                got.append((labels[0], f"checkout:{labels[1]}", bucket))
    return sorted(got)


def tick(handler: CartHandler, out: Observations, now: float) -> None:
    """What PartitionProcessor.tick does: advance the sink's clock, then fire timers."""
    out.release(now)
    handler.tick(now, out)


def bucketed(results):
    return sorted((ch, kind, int(t // 10) * 10) for ch, kind, t in results)


def run(carts: dict[str, dict], seed: int) -> Observations:
    """Deliver every event and order in a shuffled order, then let time pass."""
    handler = CartHandler(timeout=TIMEOUT, lateness=LATENESS, quiet=QUIET)
    out = Observations()
    arrivals = [("event", cid, e) for cid, c in carts.items() for e in c["events"]]
    arrivals += [("order", cid, o) for cid, c in carts.items() for o in c["orders"]]
    random.Random(seed).shuffle(arrivals)
    now = T0  # before every cart's idle point + lateness: no decision may be premature
    for i, (what, cart_id, item) in enumerate(arrivals):
        out.now = now + i * 0.001
        if what == "event":
            kind, t, channel, step = item
            handler.handle(cart_event(cart_id, kind, t, channel, step), out)
        else:
            handler.handle_link(cart_id, item, f"order-{cart_id}-{item}", out)
            handler.handle_link(cart_id, item, f"order-{cart_id}-{item}", out)  # redelivered
        tick(handler, out, out.now)
    out.release(T0 + 10 * 86_400)
    tick(handler, out, T0 + 10 * 86_400)
    return out


KINDS = ["cart.item_added", "cart.item_removed", "checkout.started", "checkout.step_completed"]


@st.composite
def cart_sets(draw):
    carts = {}
    for n in range(draw(st.integers(1, 6))):
        events = [
            (
                "cart.item_added",
                T0 + draw(st.integers(0, 7200)),
                draw(st.sampled_from(["web", "chat"])),
                None,
            )
        ]
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(KINDS))
            step = (
                draw(st.sampled_from(["shipping", "payment", "review"]))
                if kind == "checkout.step_completed"
                else None
            )
            events.append((kind, T0 + draw(st.integers(0, 9000)), "web", step))
        orders = draw(st.lists(st.integers(0, 12_000).map(lambda x: T0 + x), max_size=2))
        carts[f"cart-{n}"] = {"events": events, "orders": orders}
    return carts


@settings(max_examples=150, deadline=None)
@given(cart_sets(), st.integers(0, 10**6))
def test_outcomes_follow_event_time_not_arrival_order(carts, seed):
    assert outcomes(run(carts, seed)) == bucketed(oracle(carts))


def test_a_backfill_is_decided_in_bounded_steps_with_the_same_outcomes():
    """Every cart of a backfill is due at once; each tick decides at most MAX_TIMERS_PER_TICK
    (one tick must not hold the worker's event loop for seconds), the next ticks the rest."""
    count = 2 * MAX_TIMERS_PER_TICK + 500
    carts = {
        f"cart-{n}": {
            "events": [("cart.item_added", T0 + n, "web" if n % 2 else "chat", None)],
            "orders": [T0 + n + 60] if n % 3 == 0 else [],
        }
        for n in range(count)
    }
    handler = CartHandler(timeout=TIMEOUT, lateness=LATENESS, quiet=QUIET)
    out = Observations()
    out.now = T0
    for cart_id, cart in carts.items():  # the whole history arrives before any tick
        for kind, t, channel, step in cart["events"]:
            handler.handle(cart_event(cart_id, kind, t, channel, step), out)
        for t in cart["orders"]:
            handler.handle_link(cart_id, t, f"order-{cart_id}", out)
    later, steps = T0 + 10 * 86_400, []
    while not steps or steps[-1]:
        before = len(outcomes(out))
        tick(handler, out, later)
        steps.append(len(outcomes(out)) - before)
    assert steps == [MAX_TIMERS_PER_TICK, MAX_TIMERS_PER_TICK, 500, 0]
    assert outcomes(out) == bucketed(oracle(carts))


def scenario(events, orders=()):
    return {"c": {"events": events, "orders": list(orders)}}


def test_converted_just_before_the_timeout():
    carts = scenario([("cart.item_added", T0, "web", None)], [T0 + TIMEOUT - 1])
    assert [o[1] for o in outcomes(run(carts, 1))] == ["converted"]


def test_abandoned_then_recovered_keeps_the_abandonment():
    carts = scenario(
        [
            ("cart.item_added", T0, "web", None),
            ("checkout.step_completed", T0 + 60, "web", "shipping"),
        ],
        [T0 + TIMEOUT + 600],
    )
    got = outcomes(run(carts, 1))
    assert [o[1] for o in got] == ["abandoned", "checkout:shipping", "recovered"]
    assert got[0][2] == int((T0 + 60 + TIMEOUT) // 10) * 10  # at last activity + timeout


def test_order_arriving_before_the_cart_converts_it():
    handler = CartHandler(timeout=TIMEOUT, lateness=LATENESS, quiet=QUIET)
    out = Observations()
    out.now = T0
    handler.handle_link("c", T0 + 100, "o1", out)
    tick(handler, out, T0 + 3600)  # nothing known of the cart yet: no outcome
    assert not out.delta.windowed
    out.now = T0 + 3600
    handler.handle(cart_event("c", "cart.item_added", T0 + 50), out)
    tick(handler, out, T0 + 3600 + QUIET)
    assert outcomes(out) == [("web", "converted", int((T0 + 100) // 10) * 10)]


def test_abandonment_waits_for_lateness_and_quiet_period():
    handler = CartHandler(timeout=TIMEOUT, lateness=LATENESS, quiet=QUIET)
    out = Observations()
    out.now = T0
    handler.handle(cart_event("c", "cart.item_added", T0), out)
    tick(handler, out, T0 + TIMEOUT + LATENESS - 1)
    assert not out.delta.windowed
    tick(handler, out, T0 + TIMEOUT + LATENESS)
    assert [o[1] for o in outcomes(out)] == ["abandoned"]


def test_checkout_abandoned_at_each_step():
    for steps, expected in [
        ([], "none"),
        (["shipping"], "shipping"),
        (["shipping", "payment"], "payment"),
    ]:
        events = [("cart.item_added", T0, "web", None), ("checkout.started", T0 + 10, "web", None)]
        events += [("checkout.step_completed", T0 + 20 + i, "web", s) for i, s in enumerate(steps)]
        got = outcomes(run(scenario(events), 3))
        assert ("web", f"checkout:{expected}") in [(c, k) for c, k, _ in got]


def test_state_round_trips_through_checkpoint_changes():
    carts = {
        f"c{i}": {
            "events": [("cart.item_added", T0 + i, "web", None)],
            "orders": [T0 + 60] if i % 2 else [],
        }
        for i in range(6)
    }
    original = CartHandler(timeout=TIMEOUT, lateness=LATENESS, quiet=QUIET)
    out = Observations()
    out.now = T0
    for cart_id, cart in carts.items():
        for kind, t, channel, step in cart["events"]:
            original.handle(cart_event(cart_id, kind, t, channel, step), out)
        for o in cart["orders"]:
            original.handle_link(cart_id, o, "o", out)
    copy = CartHandler(timeout=TIMEOUT, lateness=LATENESS, quiet=QUIET)
    copy.restore(orjson.loads(orjson.dumps(original.take_changes())))
    a, b = Observations(), Observations()
    tick(original, a, T0 + 86_000)
    tick(copy, b, T0 + 86_000)
    assert outcomes(a) == outcomes(b) and len(outcomes(a)) == 6


def test_finished_carts_are_forgotten_after_retention():
    handler = CartHandler(timeout=TIMEOUT, lateness=LATENESS, quiet=QUIET, retention=3600)
    out = Observations()
    out.now = T0
    handler.handle(cart_event("c", "cart.item_added", T0), out)
    handler.handle_link("c", T0 + 5, "o", out)
    tick(handler, out, T0 + QUIET)
    assert "c" in handler.carts
    tick(handler, out, T0 + 3600 + 1)
    assert "c" not in handler.carts


def test_segments_merge_gaps_within_the_timeout():
    segments: list[list[float]] = []
    for t in (0, 100, 5000, 2000, 3500):
        add_activity(segments, t, 1800)
    assert segments == [[0, 100], [2000, 5000]]  # 100 -> 2000 is a 1900 s gap
    add_activity(segments, 1000, 1800)  # bridges it
    assert segments == [[0, 5000]]
    add_activity(segments, 9000, 1800)
    assert segments == [[0, 5000], [9000, 9000]]


@given(st.lists(st.integers(0, 40_000), min_size=1, max_size=40), st.randoms())
def test_segments_equal_a_merge_of_the_sorted_times_in_any_arrival_order(times, rng):
    expected: list[list[float]] = []
    for t in sorted(times):
        if expected and t - expected[-1][1] <= TIMEOUT:
            expected[-1][1] = t
        else:
            expected.append([t, t])
    arrival = list(times)
    rng.shuffle(arrival)
    segments: list[list[float]] = []
    for t in arrival:
        add_activity(segments, t, TIMEOUT)
    assert segments == expected
