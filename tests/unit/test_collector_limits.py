"""Per-token rate limit, against a brute-force statement of what a token bucket promises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.collector.limits import RateLimiter, retry_after_header


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(
    rate=st.floats(0.1, 50),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=80),
)
def test_never_more_than_burst_plus_rate_times_interval(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, burst, clock)
    allowed: list[float] = []
    for gap in gaps:
        clock.now += gap
        if limiter.acquire("k") == 0.0:
            allowed.append(clock.now)
    for i, start in enumerate(allowed):  # every interval [start, end] of allowed requests
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + rate * (allowed[j] - start) + 1e-6


@given(rate=st.floats(0.1, 50), burst=st.integers(1, 20), extra=st.integers(1, 30))
def test_a_refused_request_fits_after_the_wait_it_was_told(
    rate: float, burst: int, extra: int
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, burst, clock)
    assert all(limiter.acquire("k") == 0.0 for _ in range(burst))  # a full bucket at first
    for _ in range(extra):
        wait = limiter.acquire("k")
        assert wait > 0
        clock.now += wait
        assert limiter.acquire("k") == 0.0


def test_buckets_are_per_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, 2, clock)
    assert [limiter.acquire(0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert limiter.acquire(1) == 0.0


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (30, "30")])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: str) -> None:
    assert retry_after_header(wait) == header
