"""The growing shop of the demo's history: root arrivals halve every half-life back in time."""

from __future__ import annotations

import pytest

from pipeline.tools.simulate.simulator import Ramp, ShopSimulator

HALF_LIFE = 600.0
FULL_AT = 7200.0


def sessions_and_tickets(ramp: Ramp | None) -> list[float]:
    """Times of the root arrivals' first events (a cart's first item, an independent ticket),
    over two hours, and the remembered roots' ids."""
    simulator = ShopSimulator(rate=40, seed=7, start=0.0, ramp=ramp, utc_offset_hours=-12)
    seen: set[str] = set()
    times = []
    for event in simulator.events_until(FULL_AT + 1800):
        kind = event.value["event_type"]
        if kind in ("cart.item_added", "ticket.opened") and event.key not in seen:
            seen.add(event.key)
            times.append(event.time)
    return times


def count(times: list[float], start: float, end: float) -> int:
    return sum(start < t <= end for t in times)


def test_root_arrivals_halve_every_half_life_before_the_full_rate():
    thinned, full = sessions_and_tickets(Ramp(FULL_AT, HALF_LIFE)), sessions_and_tickets(None)
    for age in (0.0, HALF_LIFE, 2 * HALF_LIFE):  # one half-life wide buckets, going back
        start, end = FULL_AT - age - HALF_LIFE, FULL_AT - age
        # integral of 2^(-(FULL_AT - t)/h) over the bucket = h / ln 2 x (2^-a - 2^-(a+1)) / h
        share = (0.5 ** (age / HALF_LIFE) - 0.5 ** (age / HALF_LIFE + 1)) / 0.6931471805599453
        expected = count(full, start, end) * share
        assert count(thinned, start, end) == pytest.approx(expected, rel=0.12)
    after_thinned = count(thinned, FULL_AT, FULL_AT + 1800)
    assert after_thinned == pytest.approx(count(full, FULL_AT, FULL_AT + 1800), rel=0.06)


def test_the_ramp_factor_and_its_validation():
    ramp = Ramp(full_at=100.0, half_life=10.0)
    assert [ramp.factor(t) for t in (200.0, 100.0, 90.0, 80.0)] == [1.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="half-life"):
        Ramp(full_at=0.0, half_life=0.0)
