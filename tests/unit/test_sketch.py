"""QuantileSketch: accuracy against exact rank quantiles, exact merging, exact wire round-trip."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregates.sketch import QuantileSketch

values_st = st.lists(
    st.floats(min_value=0.001, max_value=1e7, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)
QS = ("0.5", "0.9", "0.99")


def exact_quantile(values: list[float], q: str) -> float:
    """Value at 1-based rank ceil(q * n), computed with exact arithmetic."""
    ordered = sorted(values)
    rank = max(1, math.ceil(Fraction(q) * len(ordered)))
    return ordered[rank - 1]


def sketch_of(values: list[float], **kwargs: int) -> QuantileSketch:
    sketch = QuantileSketch(**kwargs)
    for value in values:
        sketch.add(value)
    return sketch


@settings(max_examples=300, deadline=None)
@given(values_st)
def test_quantiles_within_two_percent(values: list[float]) -> None:
    sketch = sketch_of(values)
    assert sketch.count == len(values)
    for q in QS:
        true = exact_quantile(values, q)
        estimate = sketch.quantile(float(q))
        assert estimate is not None
        assert abs(estimate - true) <= 0.02 * true, (q, true, estimate)
    # quantiles() is the batched form of quantile().
    assert sketch.quantiles([0.99, 0.5, 0.9]) == [sketch.quantile(q) for q in (0.99, 0.5, 0.9)]


@given(values_st)
def test_min_and_max(values: list[float]) -> None:
    sketch = sketch_of(values)
    low, high = sketch.quantile(0.0), sketch.quantile(1.0)
    assert low is not None and high is not None
    assert abs(low - min(values)) <= 0.01 * min(values) * 1.0000001
    assert abs(high - max(values)) <= 0.01 * max(values) * 1.0000001


def test_rank_is_ceil_q_n_without_float_noise() -> None:
    # 0.28 * 25 == 7.000000000000001 in floats; the 0.28-quantile of 25 values is the 7th.
    assert 0.28 * 25 > 7
    values = [10.0**i for i in range(25)]
    sketch = sketch_of(values)
    assert sketch.quantile(0.28) == pytest.approx(1e6, rel=0.01)
    assert exact_quantile(values, "0.28") == 1e6
    values = values[:10]
    sketch = sketch_of(values)
    assert sketch.quantile(0.9) == pytest.approx(1e8, rel=0.01)
    assert sketch.quantile(0.5) == pytest.approx(1e4, rel=0.01)
    assert sketch.quantile(0.51) == pytest.approx(1e5, rel=0.01)
    assert sketch.quantile(0.0) == pytest.approx(1.0, rel=0.01)


def test_empty_and_zero_bucket() -> None:
    sketch = QuantileSketch()
    assert sketch.count == 0
    assert sketch.quantile(0.5) is None
    assert sketch.quantiles([0.5, 0.9]) == [None, None]
    sketch.add(0.0)
    sketch.add(0.0004)  # below 1 ms: the zero bucket
    sketch.add(5.0)
    assert sketch.count == 3
    assert sketch.bin_count == 1
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(0.99) == pytest.approx(5.0, rel=0.01)


def test_add_with_count_equals_repeated_add() -> None:
    a = QuantileSketch()
    a.add(3.5, count=4)
    a.add(0.0, count=2)
    a.add(7.0, count=0)
    b = sketch_of([3.5, 3.5, 3.5, 3.5, 0.0, 0.0])
    assert a == b
    assert a.count == 6


@pytest.mark.parametrize("bad", [-1.0, -1e-9, math.nan, math.inf])
def test_add_rejects_invalid_values(bad: float) -> None:
    sketch = QuantileSketch()
    with pytest.raises(ValueError):
        sketch.add(bad)
    assert sketch.count == 0


def test_invalid_arguments() -> None:
    sketch = sketch_of([1.0])
    with pytest.raises(ValueError):
        sketch.add(1.0, count=-1)
    for q in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError):
            sketch.quantile(q)
    for alpha in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError):
            QuantileSketch(alpha=alpha)
    with pytest.raises(ValueError):
        QuantileSketch(max_bins=0)


@settings(max_examples=200, deadline=None)
@given(values_st, values_st, st.sampled_from([2048, 8, 1]))
def test_merge_equals_sketch_of_concatenation(a: list[float], b: list[float], cap: int) -> None:
    left, right = sketch_of(a, max_bins=cap), sketch_of(b, max_bins=cap)
    right_before = right.copy()
    left.merge(right)
    whole = sketch_of(a + b, max_bins=cap)
    assert left == whole
    assert right == right_before  # merge leaves its argument alone
    assert left.bin_count <= cap
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert left.quantile(q) == whole.quantile(q)


def test_merge_self_and_alpha_mismatch() -> None:
    sketch = sketch_of([1.0, 2.0])
    sketch.merge(sketch)
    assert sketch == sketch_of([1.0, 2.0, 1.0, 2.0])
    with pytest.raises(ValueError):
        sketch.merge(QuantileSketch(alpha=0.02))
    with pytest.raises(TypeError):
        sketch.merge(3)  # type: ignore[arg-type]


@given(values_st, values_st)
def test_subtract_inverts_merge(a: list[float], b: list[float]) -> None:
    acc = sketch_of(a, max_bins=1 << 30)
    original = acc.copy()
    other = sketch_of(b)
    acc.merge(other)
    acc.subtract(other)
    assert acc == original
    assert acc.to_wire() == original.to_wire()  # no zero-count bins left behind


def test_subtract_rejects_what_is_not_contained() -> None:
    acc = sketch_of([1.0, 2.0])
    before = acc.copy()
    with pytest.raises(ValueError):
        acc.subtract(sketch_of([1.0, 1.0]))
    with pytest.raises(ValueError):
        acc.subtract(sketch_of([0.0]))
    assert acc == before
    acc.subtract(acc)
    assert acc.count == 0 and acc == QuantileSketch()


def test_copy_is_independent_and_can_cap() -> None:
    sketch = sketch_of([1.0, 10.0, 100.0])
    dup = sketch.copy()
    dup.add(1000.0)
    assert sketch.count == 3 and dup.count == 4
    capped = dup.copy(max_bins=2)
    assert capped.bin_count == 2 and capped.count == 4
    assert capped.quantile(1.0) == dup.quantile(1.0)


def test_collapse_bounds_bins_and_keeps_high_quantiles() -> None:
    values = [1.5**i for i in range(100)]
    sketch = sketch_of(values, max_bins=10)
    assert sketch.bin_count == 10
    assert sketch.count == 100
    for q in ("0.95", "0.99"):
        true = exact_quantile(values, q)
        assert sketch.quantile(float(q)) == pytest.approx(true, rel=0.01)


@given(
    st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1e12, allow_nan=False)),
        max_size=200,
    ),
    st.sampled_from([0.01, 0.005, 0.02]),
)
def test_wire_round_trip(values: list[float], alpha: float) -> None:
    sketch = QuantileSketch(alpha=alpha)
    for value in values:
        sketch.add(value)
    wire = sketch.to_wire()
    restored = QuantileSketch.from_wire(json.loads(json.dumps(wire)))
    assert restored == sketch
    assert restored.to_wire() == wire
    assert restored.alpha == alpha
    assert restored.quantiles([0.0, 0.5, 1.0]) == sketch.quantiles([0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    "bad",
    [None, [], [0.01, 0], [0.01, -1, []], [0.01, 0, [1]], [0.01, 0, [1, 0]], [0.01, 0, [1, 2, 1, 3]],
     [0.01, 0, [1.5, 2]], [2.0, 0, []], [0.01, 0, None], ["0.01", 0, []], [0.01, 1.0, []]],
)  # fmt: skip
def test_from_wire_rejects_malformed(bad: object) -> None:
    with pytest.raises(ValueError):
        QuantileSketch.from_wire(bad)  # type: ignore[arg-type]


def test_equality_is_by_content() -> None:
    assert sketch_of([1.0, 2.0]) == sketch_of([2.0, 1.0])
    assert sketch_of([1.0]) != sketch_of([2.0])
    assert sketch_of([1.0]) != sketch_of([1.0, 1.0])
    assert QuantileSketch(alpha=0.01) != QuantileSketch(alpha=0.02)
    assert QuantileSketch() != 0
