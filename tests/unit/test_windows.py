"""WindowStore against a brute-force model of the contract's window rule.

The reference uses exact rational arithmetic: an event at t is in the window (T, W) with bucket b
iff bucket_end(t) > T - W and bucket_start(t) <= T (the lower edge may be widened by one bucket).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.aggregates.sketch import QuantileSketch
from pipeline.aggregates.windows import (
    WindowSpec,
    WindowStore,
    bucket_end,
    bucket_start,
    format_window,
    merge_value,
    window_specs,
)

BASE = 1_700_000_000.0
DAY = 86_400.0
SPECS = window_specs([300, 3600, 86400])
MIXED_SPECS = window_specs([90, 300, 900, 1000, 3600, 86400])


# --- the brute-force model -----------------------------------------------------------------
def exact_bucket(t: float, size: float) -> tuple[Fraction, Fraction]:
    start = math.floor(Fraction(t) / Fraction(size)) * Fraction(size)
    return start, start + Fraction(size)


def in_window(t: float, spec: WindowSpec, now: float) -> bool:
    start, end = exact_bucket(t, spec.bucket)
    return end > Fraction(now) - Fraction(spec.length) and start <= Fraction(now)


def reference(events: list[tuple[Any, float, Any]], series: Any, spec: WindowSpec, now: float):
    """Fold of the matching events' values; None when no event is in the window."""
    acc = None
    for key, t, value in events:
        if key == series and in_window(t, spec, now):
            if isinstance(value, QuantileSketch):
                acc = value.copy() if acc is None else merge_value(acc, value)
            else:
                acc = value if acc is None else acc + value
    return acc


# --- strategies ----------------------------------------------------------------------------
offsets = st.one_of(
    st.floats(min_value=0, max_value=2 * DAY, allow_nan=False),
    st.integers(min_value=0, max_value=2 * 8640).map(lambda k: k * 10.0),  # pre-bucketed times
    st.integers(min_value=0, max_value=2 * 1440).map(lambda k: k * 60.0 - 0.001),
)
now_offsets = st.one_of(
    st.floats(min_value=0, max_value=2 * DAY + 600, allow_nan=False),
    st.integers(min_value=0, max_value=2 * 8640 + 60).map(lambda k: k * 10.0),
)


# --- specs and bucket arithmetic -------------------------------------------------------------
def test_window_names_and_buckets() -> None:
    assert [
        format_window(s) for s in (300, 3600, 86400, 90, 5400, 45, 7200, 1.5, 604800, 129600)
    ] == ["5m", "1h", "24h", "90s", "90m", "45s", "2h", "1.5s", "7d", "36h"]
    assert SPECS == (
        WindowSpec("5m", 300.0, 10.0),
        WindowSpec("1h", 3600.0, 60.0),
        WindowSpec("24h", 86400.0, 60.0),
    )
    specs = window_specs([900, 901, 900.0, 60])
    assert [(s.name, s.bucket) for s in specs] == [("15m", 10.0), ("901s", 60.0), ("1m", 10.0)]
    with pytest.raises(ValueError):
        window_specs([0])
    with pytest.raises(ValueError):
        WindowSpec("x", 60.0, -1.0)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False), st.sampled_from([10.0, 60.0]))
def test_bucket_start_is_an_exact_floor(t: float, size: float) -> None:
    start, end = bucket_start(t, size), bucket_end(t, size)
    assert (Fraction(start), Fraction(end)) == exact_bucket(t, size)
    assert start <= t < end


def test_ten_second_starts_map_to_the_right_minute() -> None:
    minute = 1_700_000_040.0  # a multiple of 60
    for k in range(6):
        assert bucket_start(minute + 10 * k, 60.0) == minute
    assert bucket_start(minute - 10, 60.0) == minute - 60
    assert bucket_start(minute + 60, 60.0) == minute + 60


# --- totals against the model ----------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), offsets), max_size=60),
    now_offsets,
    st.sampled_from([SPECS, MIXED_SPECS]),
)
def test_total_matches_brute_force(
    raw: list[tuple[int, float]], now_offset: float, specs: tuple[WindowSpec, ...]
) -> None:
    # Event i carries 2**i, so an int total is the exact set of events it included.
    events = [(("s", k), BASE + off, 1 << i) for i, (k, off) in enumerate(raw)]
    store = WindowStore(specs)
    for key, t, value in events:
        store.add(key, t, value)
    now = BASE + now_offset
    for k in range(3):
        series = ("s", k)
        for spec in specs:
            got = store.total(series, spec, now)
            assert got == reference(events, series, spec, now)
            mask = got or 0
            for i, (key, t, _) in enumerate(events):
                if key != series:
                    continue
                if now - spec.length < t <= now:  # strictly inside: always counted
                    assert mask >> i & 1, (spec, t, now)
                if t <= now - spec.length - spec.bucket:  # older than window + bucket: never
                    assert not mask >> i & 1, (spec, t, now)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(offsets, st.floats(min_value=0, max_value=1e6, allow_nan=False)), max_size=40
    ),
    now_offsets,
)
def test_sketch_totals_match_brute_force(raw: list[tuple[float, float]], now_offset: float) -> None:
    events = []
    store = WindowStore(SPECS)
    for off, duration in raw:
        one = QuantileSketch()
        one.add(duration)
        events.append(("ttr", BASE + off, one))
        store.add("ttr", BASE + off, one)
    now = BASE + now_offset
    for spec in SPECS:
        assert store.total("ttr", spec, now) == reference(events, "ttr", spec, now)


# Operations on a store over time: add events near the clock, move the clock (mostly forward, so
# sketch windows slide incrementally, sometimes back), query, and expire.
ops_st = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.integers(0, 2),
            st.one_of(  # how far before the clock; edges of the windows are the interesting part
                st.floats(min_value=-120, max_value=DAY, allow_nan=False),
                st.tuples(
                    st.sampled_from([90.0, 300.0, 900.0, 1000.0, 3600.0, DAY]),
                    st.floats(min_value=-130, max_value=130, allow_nan=False),
                ).map(sum),
            ),
            st.floats(min_value=0, max_value=1e5, allow_nan=False),
        ),
        st.tuples(st.just("tick"), st.floats(min_value=-200, max_value=4000, allow_nan=False)),
        st.tuples(st.just("tick"), st.integers(-2, 100).map(lambda k: k * 10.0)),
        st.tuples(st.just("tick"), st.floats(min_value=-DAY, max_value=2 * DAY, allow_nan=False)),
        st.tuples(st.just("expire"), st.floats(min_value=-DAY, max_value=600, allow_nan=False)),
        st.tuples(st.just("expire"), st.floats(min_value=0, max_value=120, allow_nan=False)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops_st, st.sampled_from([SPECS, MIXED_SPECS]))
@example(  # expiry cuts into a sliding accumulator's range, then the window moves on
    [("add", 0, 290.0, 5.0), ("add", 0, 100.0, 5.0), ("expire", 20.0), ("tick", 30.0)], SPECS
)
@example(  # 1000 s over 60 s buckets: a small step back moves only the lower edge back
    [("tick", 30.0), ("add", 0, 1016.0, 5.0), ("tick", -15.0)], MIXED_SPECS
)
@example(  # the clock jumps back, then forward again
    [("add", 1, 5.0, 1.0), ("tick", 400.0), ("tick", -395.0), ("add", 1, 0.0, 2.0), ("tick", 10.0)],
    MIXED_SPECS,
)
def test_interleaved_adds_queries_and_expiry(
    ops: list[tuple[Any, ...]], specs: tuple[WindowSpec, ...]
) -> None:
    """Series 0/1: sketches; series 2: Decimal sums. After expire(e), only now >= e is asked."""
    store = WindowStore(specs)
    events: list[tuple[Any, float, Any]] = []
    clock = BASE + DAY
    expired_at = -math.inf
    for op in ops:
        if op[0] == "add":
            _, k, back, x = op
            t = clock - back
            if k == 2:
                value: Any = Decimal(round(x, 2)).quantize(Decimal("0.01"))
            else:
                value = QuantileSketch()
                value.add(x)
                value.add(x / 3)
            store.add(k, t, value)
            events.append((k, t, value))
        elif op[0] == "tick":
            clock += op[1]
        else:
            expired_at = max(expired_at, clock + op[1])
            store.expire(clock + op[1])
        if clock < expired_at:
            continue
        for k in range(3):
            for spec in specs:
                assert store.total(k, spec, clock) == reference(events, k, spec, clock), (
                    k,
                    spec,
                    clock - BASE,
                )


# --- value types ---------------------------------------------------------------------------
def test_empty_window_is_none_and_zero_count_is_zero() -> None:
    store = WindowStore(SPECS)
    five, hour, _ = SPECS
    assert store.total("nothing", five, BASE) is None
    store.add("zero", BASE, 0)
    assert store.total("zero", five, BASE) == 0
    assert store.total("zero", five, BASE + 300 + 10) is None  # bucket left the window
    assert store.total("zero", hour, BASE + 300 + 10) == 0


def test_counts() -> None:
    store = WindowStore(SPECS)
    five, hour, day = SPECS
    for i in range(100):
        store.add(("nps_promoter", ("web",)), BASE + i * 60, 1)
    now = BASE + 99 * 60
    assert store.total(("nps_promoter", ("web",)), five, now) == 5 + 1  # ..., now-300 bucket too
    assert store.total(("nps_promoter", ("web",)), hour, now) == 60 + 1
    assert store.total(("nps_promoter", ("web",)), day, now) == 100
    assert store.total(("nps_promoter", ("mobile_app",)), day, now) is None


def test_decimal_sums_are_exact() -> None:
    store = WindowStore(SPECS)
    day = SPECS[2]
    for i in range(1000):
        store.add(("revenue", "EUR"), BASE + i, Decimal("0.10"))
    store.add(("revenue", "EUR"), BASE, Decimal("19.99"))
    total = store.total(("revenue", "EUR"), day, BASE + 1000)
    assert isinstance(total, Decimal)
    assert total == Decimal("119.99")
    assert str(total) == "119.99"


def test_sketch_windows_merge_and_are_isolated() -> None:
    store = WindowStore(SPECS)
    five, hour, _ = SPECS
    mine = QuantileSketch()
    mine.add(100.0)
    store.add("ttr", BASE, mine)
    mine.add(5000.0)  # the store copied the value: this must not leak in
    other = QuantileSketch()
    other.add(300.0)
    store.add("ttr", BASE + 5, other)
    store.add("ttr", BASE + 200, other)
    got = store.total("ttr", hour, BASE + 200)
    assert isinstance(got, QuantileSketch)
    assert got.count == 3
    assert got.quantile(0.0) == pytest.approx(100.0, rel=0.01)
    assert got.quantile(1.0) == pytest.approx(300.0, rel=0.01)
    got.add(1e6)  # the result is the caller's copy
    again = store.total("ttr", hour, BASE + 200)
    assert isinstance(again, QuantileSketch)
    assert again.count == 3
    assert other.count == 1
    # now - 5m = BASE + 5 lies in the bucket starting at BASE: the edge bucket counts whole.
    assert store.total("ttr", five, BASE + 305) == again
    assert store.total("ttr", five, BASE + 310) == other  # only the BASE+200 bucket is left


def test_merge_value() -> None:
    assert merge_value(2, 3) == 5
    assert merge_value(Decimal("0.1"), Decimal("0.2")) == Decimal("0.3")
    acc, one = QuantileSketch(), QuantileSketch()
    one.add(1.0)
    assert merge_value(acc, one) is acc  # sketches merge in place into acc
    assert acc == one and one.count == 1
    with pytest.raises(TypeError):
        merge_value(acc, 1)
    with pytest.raises(TypeError):
        merge_value(1, acc)


def test_mixing_value_kinds_in_a_series_is_rejected_without_damage() -> None:
    store = WindowStore(SPECS)
    day = SPECS[2]
    one = QuantileSketch()
    one.add(1.0)
    store.add("ttr", BASE, one)
    assert store.total("ttr", day, BASE) == one  # start a sliding accumulator
    with pytest.raises(TypeError):
        store.add("ttr", BASE + 100, 1)
    with pytest.raises(ValueError):
        store.add("ttr", BASE + 100, QuantileSketch(alpha=0.02))
    store.add("count", BASE, 1)
    with pytest.raises(TypeError):
        store.add("count", BASE, one)
    store.add("money", BASE, Decimal("1.10"))
    store.add("money", BASE + 100, 2)  # ints mix with Decimal exactly
    with pytest.raises(TypeError):
        store.add("money", BASE + 200, 0.5)  # floats would silently lose exactness
    assert store.total("money", day, BASE + 200) == Decimal("3.10")
    with pytest.raises(TypeError):
        store.add("x", BASE, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.add("x", math.nan, 1)
    assert store.total("ttr", day, BASE + 100) == one
    assert store.total("count", day, BASE) == 1


def test_foreign_spec_is_rejected() -> None:
    store = WindowStore(SPECS)
    store.add("s", BASE, 1)
    with pytest.raises(ValueError):
        store.total("s", WindowSpec("2h", 7200.0, 60.0), BASE)
    assert store.total("s", WindowSpec("1h", 3600.0, 60.0), BASE) == 1  # equal by value is fine
    with pytest.raises(ValueError):
        WindowStore([])


def test_bucket_collapse_inside_a_sliding_window_stays_exact() -> None:
    # A bucket sketch that collapses bins is no longer old + value; the accumulator must resync.
    store = WindowStore(SPECS)
    day = SPECS[2]
    events = []
    for i in range(12):
        value = QuantileSketch(max_bins=4)
        value.add(2.0**i)
        events.append(("ttr", BASE + 1, value))
        store.add("ttr", BASE + 1, value)
        assert store.total("ttr", day, BASE + 10 + i) == reference(events, "ttr", day, BASE + 10)
    assert store.total("ttr", day, BASE + 100).bin_count == 4  # type: ignore[union-attr]
    # Slide the collapsed bucket out while a later one stays in: subtraction must still be exact.
    later = QuantileSketch(max_bins=4)
    later.add(7.0)
    events.append(("ttr", BASE + 3600, later))
    store.add("ttr", BASE + 3600, later)
    assert store.total("ttr", day, BASE + 3600) == reference(events, "ttr", day, BASE + 3600)
    assert store.total("ttr", day, BASE + DAY + 60) == later


def test_expiry_inside_a_sliding_sketch_window() -> None:
    store = WindowStore(SPECS)
    five = SPECS[0]
    events = []
    for i in range(40):
        one = QuantileSketch()
        one.add(float(i + 1))
        events.append(("ttr", BASE + 10 * i, one))
        store.add("ttr", BASE + 10 * i, one)
    now = BASE + 390
    assert store.total("ttr", five, now) == reference(events, "ttr", five, now)
    store.expire(now + 50)  # drops 10 s buckets the sliding 5m accumulator still covers
    for now in (BASE + 440, BASE + 450, BASE + 700, BASE + 900):
        assert store.total("ttr", five, now) == reference(events, "ttr", five, now)


# --- expiry --------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), offsets), max_size=60),
    st.floats(min_value=0, max_value=2 * DAY, allow_nan=False),
    st.lists(st.floats(min_value=0, max_value=DAY, allow_nan=False), max_size=5),
)
def test_expire_keeps_what_is_needed_and_drops_the_rest(
    raw: list[tuple[int, float]], expire_offset: float, later: list[float]
) -> None:
    events = [(k, BASE + off, 1 << i) for i, (k, off) in enumerate(raw)]
    store, untouched = WindowStore(SPECS), WindowStore(SPECS)
    for key, t, value in events:
        store.add(key, t, value)
        untouched.add(key, t, value)
    now = BASE + expire_offset
    # Expected survivors per ring: 10 s buckets serve 5m only, 60 s buckets serve up to 24h.
    kept: set[tuple[float, Any, Fraction]] = set()
    held: set[tuple[float, Any, Fraction]] = set()
    for key, t, _ in events:
        for size, horizon in ((10.0, 300.0), (60.0, DAY)):
            start, end = exact_bucket(t, size)
            held.add((size, key, start))
            if end > Fraction(now) - Fraction(horizon):
                kept.add((size, key, start))
    assert store.bucket_count() == len(held)
    assert store.expire(now) == len(held) - len(kept)
    assert store.bucket_count() == len(kept)
    assert set(store.series()) == {key for _, key, _ in kept}
    assert store.expire(now) == 0
    for extra in [0.0, *later]:
        for key in range(4):
            for spec in SPECS:
                q = now + extra
                assert store.total(key, spec, q) == untouched.total(key, spec, q)


def test_expire_forgets_idle_series_and_counts_drops() -> None:
    store = WindowStore(SPECS)
    store.add("old", BASE, 1)
    store.add("new", BASE + DAY, 1)
    assert set(store.series()) == {"old", "new"}
    assert store.expire(BASE + DAY) == 1  # old's 10 s bucket; its minute bucket is still needed
    assert set(store.series()) == {"old", "new"}
    assert store.total("old", SPECS[2], BASE + DAY) == 1
    assert store.expire(BASE + DAY + 60) == 1
    assert list(store.series()) == ["new"]
    assert store.total("old", SPECS[2], BASE + DAY + 60) is None
