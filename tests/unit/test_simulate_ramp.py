"""The growing shop of the demo's history: root arrivals halve every half-life back in time."""

from __future__ import annotations

import pytest

from pipeline.tools.simulate.simulator import Ramp, ShopSimulator

HALF_LIFE = 600.0
FULL_AT = 7200.0


def root_times(ramp: Ramp | None, kind: str) -> list[float]:
    """Times of the roots' first events of ``kind`` (``cart.item_added``: a session,
    ``ticket.opened``: a ticket) over two and a half hours."""
    simulator = ShopSimulator(rate=40, seed=7, start=0.0, ramp=ramp, utc_offset_hours=-12)
    seen: set[str] = set()
    times = []
    for event in simulator.events_until(FULL_AT + 1800):
        if event.value["event_type"] == kind and event.key not in seen:
            seen.add(event.key)
            times.append(event.time)
    return times


def count(times: list[float], start: float, end: float) -> int:
    return sum(start < t <= end for t in times)


def test_sessions_halve_every_half_life_before_the_full_rate():
    ramp = Ramp(FULL_AT, HALF_LIFE)
    thinned, full = root_times(ramp, "cart.item_added"), root_times(None, "cart.item_added")
    for age in (0.0, HALF_LIFE, 2 * HALF_LIFE):  # one half-life wide buckets, going back
        start, end = FULL_AT - age - HALF_LIFE, FULL_AT - age
        # integral of 2^(-(FULL_AT - t)/h) over the bucket = h / ln 2 x (2^-a - 2^-(a+1)) / h
        share = (0.5 ** (age / HALF_LIFE) - 0.5 ** (age / HALF_LIFE + 1)) / 0.6931471805599453
        expected = count(full, start, end) * share
        assert count(thinned, start, end) == pytest.approx(expected, rel=0.12)
    after_thinned = count(thinned, FULL_AT, FULL_AT + 1800)
    assert after_thinned == pytest.approx(count(full, FULL_AT, FULL_AT + 1800), rel=0.06)


def test_tickets_keep_the_full_rate_through_the_ramp():
    """A thinned ticket past would leave the 24h TTR baseline made of quick recent resolutions."""
    ramped = root_times(Ramp(FULL_AT, HALF_LIFE), "ticket.opened")
    full = root_times(None, "ticket.opened")
    before = count(full, FULL_AT - 4 * HALF_LIFE, FULL_AT)
    assert before > 100
    assert count(ramped, FULL_AT - 4 * HALF_LIFE, FULL_AT) == pytest.approx(before, rel=0.15)


def test_the_ramp_factor_and_its_validation():
    ramp = Ramp(full_at=100.0, half_life=10.0)
    assert [ramp.factor(t) for t in (200.0, 100.0, 90.0, 80.0)] == [1.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="half-life"):
        Ramp(full_at=0.0, half_life=0.0)
