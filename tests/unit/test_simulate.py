"""The shop simulator: contract-valid, deterministic, time-ordered, realistic, spikes that show."""

from __future__ import annotations

import asyncio
import math
import random
import re
import statistics
import time
from collections import Counter, defaultdict
from datetime import datetime
from decimal import Decimal

import orjson
import pytest

from pipeline.tools.simulate import (
    CHANNELS,
    DIURNAL_PROFILE,
    ShopSimulator,
    SimEvent,
    SlaSpike,
    TtrSpike,
    parse_sla_spike,
    parse_ttr_spike,
    produce,
    run_live,
)

MIDNIGHT = 1_699_920_000.0  # 2023-11-14T00:00:00Z
HOUR = 3600.0
DAY = 86400.0
ALL_EVENT_TYPES = {
    "cart.item_added",
    "cart.item_removed",
    "checkout.started",
    "checkout.step_completed",
    "order.placed",
    "order.refunded",
    "order.shipped",
    "order.delivered",
    "ticket.opened",
    "ticket.agent_replied",
    "ticket.resolved",
    "ticket.reopened",
    "survey.submitted",
}
LONG_RUN_DAYS = 5


@pytest.fixture(scope="module")
def six_hours() -> list[SimEvent]:
    """6 simulated hours at 20 events/s (the validation sample of the brief)."""
    return ShopSimulator(rate=20, seed=11, start=MIDNIGHT).events_until(MIDNIGHT + 6 * HOUR)


@pytest.fixture(scope="module")
def long_run() -> list[SimEvent]:
    """Several days at a low rate: long enough for deliveries, refunds and reopens."""
    simulator = ShopSimulator(rate=2, seed=5, start=MIDNIGHT)
    return simulator.events_until(MIDNIGHT + LONG_RUN_DAYS * DAY)


def _key(event: SimEvent) -> tuple[str, str, bytes, float]:
    return (event.topic, event.key, orjson.dumps(event.value), event.time)


def _ttr_observations(events: list[SimEvent]) -> list[tuple[float, float]]:
    """(resolution time, TTR) of every first resolution, as the contract defines TTR."""
    opened: dict[str, float] = {}
    observations = []
    for event in events:
        if event.value["event_type"] == "ticket.opened":
            opened[event.key] = event.time
        elif event.value["event_type"] == "ticket.resolved" and event.key in opened:
            observations.append((event.time, event.time - opened.pop(event.key)))
    return observations


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[8]


# --- determinism and time ----------------------------------------------------------------------
def test_same_seed_same_events_however_time_is_chunked() -> None:
    end = MIDNIGHT + 10 * HOUR + 1800
    start = MIDNIGHT + 10 * HOUR
    once = ShopSimulator(rate=20, seed=3, start=start).events_until(end)
    again = ShopSimulator(rate=20, seed=3, start=start).events_until(end)
    assert len(once) > 20_000
    assert [_key(e) for e in once] == [_key(e) for e in again]

    chunked_sim = ShopSimulator(rate=20, seed=3, start=start)
    steps = random.Random(0)
    chunked: list[SimEvent] = []
    t = start
    while t < end:
        t = min(end, t + steps.choice([0.0004, 0.05, 0.1, 1.7, 60.0, 333.3]))
        chunked.extend(chunked_sim.events_until(t))
    assert [_key(e) for e in chunked] == [_key(e) for e in once]

    other = ShopSimulator(rate=20, seed=4, start=start).events_until(start + 60)
    assert [_key(e) for e in other] != [_key(e) for e in once[: len(other)]]


def test_batches_are_ordered_and_never_reach_past_t_end() -> None:
    simulator = ShopSimulator(rate=5, seed=8, start=MIDNIGHT + 0.25)
    steps = random.Random(1)
    previous = MIDNIGHT + 0.25
    seen = 0
    for _ in range(1500):
        t_end = previous + steps.choice([0.0001, 0.0015, 0.1, 0.1, 2.5, 90.0])
        batch = simulator.events_until(t_end)
        times = [e.time for e in batch]
        assert times == sorted(times)
        assert all(previous < t <= t_end for t in times)
        for event in batch:
            occurred = datetime.fromisoformat(str(event.value["occurred_at"]))
            assert occurred.timestamp() == pytest.approx(event.time, abs=1e-6)
            assert str(event.value["occurred_at"]).endswith("Z")
        assert simulator.now <= t_end
        seen += len(batch)
        previous = t_end
    assert seen > 1000
    assert simulator.events_until(previous) == []  # asking again for the past gives nothing
    assert simulator.events_until(previous - 10) == []


# --- the contract ------------------------------------------------------------------------------
def test_every_event_of_six_hours_passes_the_contract(six_hours: list[SimEvent]) -> None:
    from schemas import decode_record

    for event in six_hours:
        decoded = decode_record(
            event.topic, event.key.encode(), orjson.dumps(event.value), now=event.time
        )
        assert decoded.event_type == event.value["event_type"]
    assert {e.topic for e in six_hours} == {"carts", "orders", "tickets", "surveys"}
    assert len({e.value["event_id"] for e in six_hours}) == len(six_hours)
    sources = {e.value["source"] for e in six_hours}
    assert {"storefront", "checkout-service", "helpdesk", "survey-tool"} <= sources
    assert all(e.value["schema_version"] == 1 and e.value["customer_id"] for e in six_hours)


def test_long_run_has_every_event_type_and_they_validate(long_run: list[SimEvent]) -> None:
    from schemas import decode_record

    by_type: dict[str, list[SimEvent]] = defaultdict(list)
    for event in long_run:
        by_type[str(event.value["event_type"])].append(event)
    assert set(by_type) == ALL_EVENT_TYPES
    for events in by_type.values():
        for event in events[:500] + events[-500:]:
            decode_record(
                event.topic, event.key.encode(), orjson.dumps(event.value), now=event.time
            )
    assert len({e.value["event_id"] for e in long_run}) == len(long_run)


# --- realism -----------------------------------------------------------------------------------
def test_channels(long_run: list[SimEvent]) -> None:
    assert {e.value["channel"] for e in long_run} == set(CHANNELS)
    first_of_cart: dict[str, str] = {}
    for event in long_run:
        if event.topic == "carts":
            first_of_cart.setdefault(event.key, str(event.value["channel"]))
    shares = Counter(first_of_cart.values())
    assert shares["web"] / len(first_of_cart) == pytest.approx(0.45, abs=0.02)
    assert shares["mobile_app"] / len(first_of_cart) == pytest.approx(0.30, abs=0.02)
    assert shares["social"] / len(first_of_cart) == pytest.approx(0.02, abs=0.01)
    tickets = [e.value["channel"] for e in long_run if e.value["event_type"] == "ticket.opened"]
    service = sum(c in ("chat", "email", "call_center", "web") for c in tickets)
    assert service / len(tickets) > 0.8


def test_channel_weights_option() -> None:
    simulator = ShopSimulator(rate=20, seed=1, start=MIDNIGHT, channel_weights={"store": 1.0})
    carts = [e for e in simulator.events_until(MIDNIGHT + HOUR) if e.topic == "carts"]
    assert carts
    assert {e.value["channel"] for e in carts} == {"store"}


def test_entities_are_consistent(long_run: list[SimEvent]) -> None:
    """One channel and customer per entity; totals, currencies and lifecycles add up."""
    channel: dict[tuple[str, str], object] = {}
    customer: dict[tuple[str, str], object] = {}
    cart_lines: dict[str, dict[str, list[Decimal]]] = defaultdict(dict)
    cart_currency: dict[str, object] = {}
    orders: dict[str, dict[str, object]] = {}
    ticket_state: dict[str, str] = {}
    for event in long_run:
        value = event.value
        entity = (event.topic, event.key)
        assert channel.setdefault(entity, value["channel"]) == value["channel"]
        assert customer.setdefault(entity, value["customer_id"]) == value["customer_id"]
        kind = value["event_type"]
        if kind == "cart.item_added":
            line = cart_lines[event.key].setdefault(
                str(value["product_id"]), [Decimal(0), Decimal(str(value["unit_price"]))]
            )
            line[0] += int(value["quantity"])  # type: ignore[call-overload]
            assert cart_currency.setdefault(event.key, value["currency"]) == value["currency"]
        elif kind == "cart.item_removed":
            line = cart_lines[event.key][str(value["product_id"])]
            line[0] -= int(value["quantity"])  # type: ignore[call-overload]
            assert line[0] >= 0
        elif kind == "order.placed":
            cart = str(value["cart_id"])
            if cart in cart_lines:  # carts started before the run are not in it
                expected = sum(q * p for q, p in cart_lines[cart].values())
                assert Decimal(str(value["total"])) == expected
                assert value["currency"] == cart_currency[cart]
                assert value["customer_id"] == customer[("carts", cart)]
            orders[event.key] = {"placed": event.time, "total": Decimal(str(value["total"]))}
            orders[event.key]["currency"] = value["currency"]
        elif kind == "order.shipped":
            orders[event.key]["shipped"] = event.time
            promised = datetime.fromisoformat(str(value["promised_delivery_at"])).timestamp()
            assert DAY <= promised - event.time <= 4 * DAY
        elif kind == "order.delivered":
            assert orders[event.key]["shipped"] < event.time  # type: ignore[operator]
        elif kind == "order.refunded":
            order = orders[event.key]
            assert 0 < Decimal(str(value["amount"])) <= order["total"]  # type: ignore[operator]
            assert value["currency"] == order["currency"]
        elif kind == "ticket.opened":
            assert event.key not in ticket_state
            ticket_state[event.key] = "open"
        elif kind == "ticket.agent_replied":
            assert ticket_state[event.key] == "open"
        elif kind == "ticket.resolved":
            assert ticket_state[event.key] in ("open", "reopened")
            ticket_state[event.key] = "resolved"
        elif kind == "ticket.reopened":
            assert ticket_state[event.key] == "resolved"
            ticket_state[event.key] = "reopened"


def test_aggregates_are_plausible(long_run: list[SimEvent]) -> None:
    surveys = [e.value for e in long_run if e.topic == "surveys"]
    kinds = Counter(v["survey"] for v in surveys)
    assert kinds["nps"] / len(surveys) == pytest.approx(0.5, abs=0.03)
    assert kinds["csat"] / len(surveys) == pytest.approx(0.3, abs=0.03)
    assert {v["touchpoint"] for v in surveys} == {"checkout", "delivery", "support"}
    nps = [int(v["score"]) for v in surveys if v["survey"] == "nps"]  # type: ignore[call-overload]
    nps_score = 100 * (sum(s >= 9 for s in nps) - sum(s <= 6 for s in nps)) / len(nps)
    assert 0 <= nps_score <= 60
    csat = [int(v["score"]) for v in surveys if v["survey"] == "csat"]  # type: ignore[call-overload]
    assert 0.6 <= sum(s >= 4 for s in csat) / len(csat) <= 0.95
    ces = [int(v["score"]) for v in surveys if v["survey"] == "ces"]  # type: ignore[call-overload]
    assert 2.0 <= statistics.mean(ces) <= 3.2

    promised: dict[str, str] = {}
    on_time = late = 0
    last_activity: dict[str, float] = {}
    last_step: dict[str, str] = {}
    order_of_cart: dict[str, float] = {}
    placed = refunds = 0
    for event in long_run:
        value = event.value
        kind = value["event_type"]
        if event.topic == "carts":
            last_activity[event.key] = event.time
            if kind == "checkout.started":
                last_step[event.key] = "none"
            elif kind == "checkout.step_completed":
                last_step[event.key] = str(value["step"])
        elif kind == "order.placed":
            placed += 1
            order_of_cart[str(value["cart_id"])] = event.time
        elif kind == "order.refunded":
            refunds += 1
        elif kind == "order.shipped":
            promised[event.key] = str(value["promised_delivery_at"])
        elif kind == "order.delivered":
            if value["occurred_at"] <= promised[event.key]:
                on_time += 1
            else:
                late += 1
    assert 0.80 <= on_time / (on_time + late) <= 0.97
    assert 0 < refunds / placed <= 0.05

    horizon = MIDNIGHT + (LONG_RUN_DAYS - 1) * DAY  # carts whose fate is known by the end
    converted = abandoned = recovered = 0
    abandoned_at: Counter[str] = Counter()
    for cart, last in last_activity.items():
        if last > horizon:
            continue
        order = order_of_cart.get(cart)
        if order is not None and order <= last + 1800:
            converted += 1
        else:
            abandoned += 1
            abandoned_at[last_step.get(cart, "no checkout")] += 1
            recovered += order is not None
    assert 0.55 <= abandoned / (abandoned + converted) <= 0.85
    assert set(abandoned_at) == {"no checkout", "none", "shipping", "payment", "review"}
    assert 0.02 <= recovered / abandoned <= 0.09

    types = Counter(e.value["event_type"] for e in long_run)
    assert 0.04 <= types["ticket.reopened"] / types["ticket.opened"] <= 0.12
    assert types["ticket.agent_replied"] < types["ticket.opened"]  # some never get a reply


def test_orders_sometimes_precede_their_last_cart_event(six_hours: list[SimEvent]) -> None:
    last_cart_event: dict[str, float] = {}
    before = after = 0
    order_cart: dict[str, float] = {}
    for event in six_hours:
        if event.topic == "carts":
            last_cart_event[event.key] = event.time
        elif event.value["event_type"] == "order.placed":
            order_cart[str(event.value["cart_id"])] = event.time
    for cart, ordered in order_cart.items():
        if ordered < last_cart_event[cart]:
            before += 1
        else:
            after += 1
    assert 0.03 < before / (before + after) < 0.25


def test_rate_and_day_night_cycle(long_run: list[SimEvent]) -> None:
    assert statistics.mean(DIURNAL_PROFILE) == pytest.approx(1.0)
    assert min(DIURNAL_PROFILE) == pytest.approx(0.3, abs=0.05)
    assert max(DIURNAL_PROFILE) == pytest.approx(1.6, abs=0.1)
    last_day = [e for e in long_run if e.time > MIDNIGHT + (LONG_RUN_DAYS - 1) * DAY]
    assert len(last_day) / DAY == pytest.approx(2.0, rel=0.08)  # follow-ups in steady state
    by_hour = Counter(
        int((e.time - MIDNIGHT) % DAY // HOUR) for e in long_run[len(long_run) // 3 :]
    )
    evening = sum(by_hour[h] for h in (19, 20, 21))
    night = sum(by_hour[h] for h in (2, 3, 4))
    assert evening > 2.5 * night


def test_ttr_is_log_normal_around_the_configured_median(long_run: list[SimEvent]) -> None:
    ttrs = [ttr for _, ttr in _ttr_observations(long_run)]
    median = statistics.median(ttrs)
    assert 0.6 * 2 * HOUR <= median <= 1.4 * 2 * HOUR
    assert 2.5 <= _p90(ttrs) / median <= 5
    fast = ShopSimulator(rate=5, seed=5, start=MIDNIGHT, ttr_median=300)
    fast_ttrs = [ttr for _, ttr in _ttr_observations(fast.events_until(MIDNIGHT + 12 * HOUR))]
    assert 200 <= statistics.median(fast_ttrs) <= 450


def test_ttr_spike_multiplies_observed_p90() -> None:
    """Windows inside the spike see ~factor x the p90 TTR of before; counts stay normal."""
    spike = TtrSpike(start=MIDNIGHT + 8 * HOUR, duration=HOUR, factor=8)

    def observations(ttr_spike: TtrSpike | None) -> list[tuple[float, float]]:
        simulator = ShopSimulator(
            rate=12, seed=21, start=MIDNIGHT, ttr_spike=ttr_spike, ttr_median=600
        )
        return _ttr_observations(simulator.events_until(spike.end + HOUR))

    def window(obs: list[tuple[float, float]], start: float, end: float) -> list[float]:
        return [ttr for t, ttr in obs if start < t <= end]

    spiked, control = observations(spike), observations(None)
    before = window(spiked, spike.start - 2 * HOUR, spike.start)
    baseline = _p90(before)
    assert _p90(window(control, spike.start - 2 * HOUR, spike.start)) == pytest.approx(
        baseline, rel=0.3
    )
    for quarter in range(4):
        start = spike.start + quarter * 900
        inside = window(spiked, start, start + 900)
        assert len(inside) > 40
        assert _p90(inside) >= spike.factor / 2 * baseline
        assert _p90(window(control, start, start + 900)) < 2 * baseline
    during = window(spiked, spike.start, spike.end)
    assert _p90(during) >= 0.7 * spike.factor * baseline
    assert len(during) >= 0.7 * len(window(control, spike.start, spike.end))
    after = window(spiked, spike.end + 1800, spike.end + HOUR)  # after the backlog drain
    assert _p90(after) < 2 * baseline


# CONTRACT.md "SLA and business hours", default policy (calendar time): urgent targets.
URGENT_FIRST_RESPONSE = 900.0
URGENT_RESOLUTION = 14400.0


def _urgent_tickets(events: list[SimEvent]) -> dict[str, dict[str, float]]:
    """Per urgent ticket: "opened", and the first "replied" / "resolved" if they came."""
    tickets: dict[str, dict[str, float]] = {}
    for event in events:
        kind = event.value["event_type"]
        if kind == "ticket.opened" and event.value["priority"] == "urgent":
            tickets[event.key] = {"opened": event.time}
        elif event.key in tickets:
            field = {"ticket.agent_replied": "replied", "ticket.resolved": "resolved"}.get(kind)
            if field is not None:
                tickets[event.key].setdefault(field, event.time)
    return tickets


def _at_risk_first_response(tickets: dict[str, dict[str, float]], now: float) -> int:
    """Urgent tickets whose first response is due within the hour, not passed, not yet given
    (nor made moot by a resolution): the contract's at-risk count for kind first_response."""
    return sum(
        1
        for t in tickets.values()
        if t["opened"] <= now <= t["opened"] + URGENT_FIRST_RESPONSE <= now + HOUR
        and t.get("replied", math.inf) > now
        and t.get("resolved", math.inf) > now
    )


def test_sla_spike_makes_urgent_tickets_miss_both_targets() -> None:
    """Inside the spike urgent tickets come ~factor x as often and every one of them misses its
    first response and resolution targets; outside it they are as usual."""
    spike = SlaSpike(start=MIDNIGHT + 12 * HOUR, duration=HOUR, factor=10)
    until = spike.end + 10 * HOUR  # every spike ticket resolved

    def run(sla_spike: SlaSpike | None) -> list[SimEvent]:
        simulator = ShopSimulator(
            rate=2, seed=31, start=MIDNIGHT + 6 * HOUR, sla_spike=sla_spike, ttr_median=1200
        )
        return simulator.events_until(until)

    spiked, control = _urgent_tickets(run(spike)), _urgent_tickets(run(None))
    assert _urgent_tickets(run(spike)) == spiked  # deterministic with a seed

    def opened_in(tickets: dict[str, dict[str, float]], start: float, end: float) -> list[dict]:
        return [t for t in tickets.values() if start <= t["opened"] <= end]

    inside = opened_in(spiked, spike.start, spike.end)
    normal = len(opened_in(control, spike.start, spike.end))
    assert normal >= 3  # ~7 % of ~70 tickets an hour
    assert len(inside) >= 0.5 * spike.factor * normal and len(inside) >= 40, (len(inside), normal)
    for ticket in inside:
        assert ticket["resolved"] > ticket["opened"] + URGENT_RESOLUTION, ticket
        assert ticket.get("replied", math.inf) > ticket["opened"] + URGENT_FIRST_RESPONSE, ticket
    replied = [t for t in inside if "replied" in t]
    assert len(replied) >= 0.8 * len(inside)  # slow, not silent: most still get a reply
    # At risk (first response) through the spike: the alert's >= 5 urgent tickets, many times.
    quarter_hours = [spike.start + 900 * (i + 1) for i in range(4)]
    assert all(_at_risk_first_response(spiked, t) >= 5 for t in quarter_hours)
    assert all(_at_risk_first_response(control, t) < 5 for t in quarter_hours)
    # Outside the spike urgent tickets keep their normal pace: most first replies in time.
    after = opened_in(spiked, spike.end + 1, spike.end + 6 * HOUR)
    in_time = [
        t for t in after if t.get("replied", math.inf) <= t["opened"] + URGENT_FIRST_RESPONSE
    ]
    assert len(after) >= 10 and len(in_time) >= 0.5 * len(after)


def test_memory_stays_bounded() -> None:
    simulator = ShopSimulator(rate=0.5, seed=2, start=MIDNIGHT)
    pending = []
    for day in range(1, 11):
        simulator.events_until(MIDNIGHT + day * DAY)
        pending.append(simulator.pending)
    steady = statistics.mean(pending[4:6])
    assert max(pending[6:]) <= 1.2 * steady


def test_generation_speed() -> None:
    simulator = ShopSimulator(rate=200, seed=1, start=MIDNIGHT + 12 * HOUR)
    started = time.process_time()
    count = sum(len(simulator.events_until(MIDNIGHT + 12 * HOUR + m * 60)) for m in range(1, 16))
    rate = count / (time.process_time() - started)
    print(f"\nsimulator: {count} events at {rate:,.0f} events/s (CPU time)")
    assert rate > 5_000  # loose: shared CI machines; ~50-80k/s on a quiet core


# --- arguments ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "offset", "duration", "factor"),
    [
        ("10m", 0, 600, 8),
        ("10m:5x", 0, 600, 5),
        ("+2m,10m:5x", 120, 600, 5),
        (" +90s , 1.5h : 2.5X ", 90, 5400, 2.5),
        ("600", 0, 600, 8),
        ("+0s,30s:3", 0, 30, 3),
    ],
)
def test_parse_ttr_spike(text: str, offset: float, duration: float, factor: float) -> None:
    assert parse_ttr_spike(text, 1000.0) == TtrSpike(1000.0 + offset, duration, factor)


@pytest.mark.parametrize(
    "text",
    ["", "x", "10m:", "10m:x", "10m:1x", "10m:0.5x", "0s", "-5m", "+-1m,5m", "2m,10m", "+2m,"],
)
def test_parse_ttr_spike_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="TTR spike"):
        parse_ttr_spike(text, 0.0)


@pytest.mark.parametrize(
    ("text", "offset", "duration", "factor"),
    [("20m", 0, 1200, 10), ("+1m,30m:4x", 60, 1800, 4), ("1h:2.5", 0, 3600, 2.5)],
)
def test_parse_sla_spike(text: str, offset: float, duration: float, factor: float) -> None:
    assert parse_sla_spike(text, 1000.0) == SlaSpike(1000.0 + offset, duration, factor)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", r"use \[\+OFFSET,\]DURATION\[:FACTORx\]"),
        ("10m:1x", "factor must be > 1"),
        ("0s", "duration must be > 0"),
        ("+2m,", "use"),
        ("soon", "not a duration: 'soon'"),
    ],
)
def test_parse_sla_spike_errors_name_the_spike_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^not a valid SLA spike: '{re.escape(text)}'.*{problem}"):
        parse_sla_spike(text, 0.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate"):
        ShopSimulator(rate=0, start=MIDNIGHT)
    with pytest.raises(ValueError, match="channel_weights"):
        ShopSimulator(rate=1, start=MIDNIGHT, channel_weights={"fax": 1.0})
    with pytest.raises(ValueError, match="factor"):
        TtrSpike(start=0, duration=60, factor=1)
    with pytest.raises(ValueError, match="SLA spike duration"):
        SlaSpike(start=0, duration=0)
    with pytest.raises(ValueError, match="order_time_scale"):
        ShopSimulator(rate=1, start=MIDNIGHT, order_time_scale=0)


def test_order_time_scale_delivers_within_minutes() -> None:
    """At 1/288 (a day -> 5 min) an hour holds whole order lives; unscaled it holds none."""
    scale = 1 / 288
    start = MIDNIGHT + 12 * HOUR
    scaled = ShopSimulator(rate=20, seed=3, start=start, order_time_scale=scale)
    events = scaled.events_until(start + HOUR)
    plain = ShopSimulator(rate=20, seed=3, start=start).events_until(start + HOUR)
    placed: dict[str, float] = {}
    shipped: dict[str, tuple[float, float]] = {}
    on_time = late = 0
    for event in events:
        kind = event.value["event_type"]
        if kind == "order.placed":
            placed[event.key] = event.time
        elif kind == "order.shipped":
            promised = datetime.fromisoformat(str(event.value["promised_delivery_at"])).timestamp()
            assert DAY * scale <= promised - event.time <= 4 * DAY * scale + 0.001
            assert event.time - placed[event.key] <= 72 * HOUR * scale + 0.001
            shipped[event.key] = (event.time, promised)
        elif kind == "order.delivered":
            sent, promised = shipped[event.key]
            assert sent < event.time
            on_time, late = (on_time + 1, late) if event.time <= promised else (on_time, late + 1)
    assert on_time + late > 0.6 * len(placed)  # most orders of the hour are delivered in it
    assert 0.8 < on_time / (on_time + late) < 0.97  # the ~90 % on time holds when scaled
    unscaled = sum(e.value["event_type"] == "order.delivered" for e in plain)
    assert unscaled == 0  # without the scale, nothing placed in the hour arrives in it


# --- Kafka -------------------------------------------------------------------------------------
class FakeProducer:
    """Records sends; like aiokafka, ``send`` returns a future resolved on delivery."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, float]] = []
        self.unresolved = 0

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None):  # type: ignore[no-untyped-def]
        assert key is not None and value is not None
        self.sent.append((topic, key, value, time.time()))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unresolved += 1

        def deliver() -> None:
            self.unresolved -= 1
            future.set_result(None)

        asyncio.get_running_loop().call_soon(deliver)
        return future


async def test_produce_sends_every_event_with_key_and_json() -> None:
    events = ShopSimulator(rate=20, seed=1, start=MIDNIGHT).events_until(MIDNIGHT + 600)
    producer = FakeProducer()
    count = await produce(events, producer, topic_prefix="shop.", batch=100)
    assert count == len(events) == len(producer.sent)
    assert producer.unresolved == 0  # every delivery awaited
    for event, (topic, key, value, _) in zip(events, producer.sent, strict=True):
        assert topic == "shop." + event.topic
        assert key == event.key.encode()
        assert orjson.loads(value) == event.value


async def test_run_live_paces_with_the_clock() -> None:
    producer = FakeProducer()
    batches: list[int] = []
    sent = await run_live(
        producer,
        rate=200,
        duration=0.6,
        seed=3,
        history=120,
        on_batch=batches.append,
    )
    assert sent == len(producer.sent) == sum(batches) > 100
    for _, _, value, sent_at in producer.sent:
        occurred = datetime.fromisoformat(orjson.loads(value)["occurred_at"]).timestamp()
        assert occurred <= sent_at + 0.001  # never ahead of the clock
    times = [datetime.fromisoformat(orjson.loads(v)["occurred_at"]) for _, _, v, _ in producer.sent]
    assert times == sorted(times)
    assert (times[-1] - times[0]).total_seconds() > 100  # the history came first
