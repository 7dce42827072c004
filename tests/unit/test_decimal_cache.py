"""The amount cache in schemas/fields.py answers exactly what parsing answers: same value, same
printed form (1 and 1.0 must not share an entry), the same rejections, and it stays bounded."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from schemas import fields
from tests.strategies import amounts

wire_amounts = amounts() | st.integers(-5, 10**16) | st.floats(allow_nan=True) | st.text(max_size=8)


def outcome(parse: Any, value: Any) -> tuple[str, str]:
    try:
        result = parse(value)
    except PydanticCustomError as error:
        return ("rejected", error.type)
    return (type(result).__name__, str(result))


@given(values=st.lists(wire_amounts, max_size=20))
def test_cached_parse_equals_parsing(values: list[Any]) -> None:
    for value in [*values, *values]:  # the second pass is served from the cache
        assert outcome(fields._parse_decimal, value) == outcome(
            fields._parse_decimal_uncached, value
        )


@pytest.mark.parametrize("first, second", [(1, 1.0), (1.0, 1), ("1", 1), (0.0, -0.0)])
def test_equal_numbers_of_another_type_are_not_served(first: Any, second: Any) -> None:
    fields._parse_decimal(first)
    assert str(fields._parse_decimal(second)) == str(fields._parse_decimal_uncached(second))


def test_the_cache_stays_bounded() -> None:
    for cents in range(3 * fields._DECIMAL_CACHE_SIZE):
        fields._parse_decimal(f"{cents / 100:.2f}")
    assert len(fields._DECIMAL_CACHES[str]) <= fields._DECIMAL_CACHE_SIZE
