"""Strict field types shared by all event models.

Events are parsed with orjson and then validated in pydantic's strict *python* mode, which would
reject every JSON string for a datetime, Decimal or enum field. The types below turn exactly
the accepted wire forms into those objects and reject everything else, so no lax coercion (bool as
int, "5" as 5, naive or epoch timestamps) slips through.

Timestamps, schema versions and enums are checked by pydantic-core itself (Rust): a Python
validator per field cost ~1.5 µs per event, a fifth of validation. Only amounts keep a Python
validator (cached: prices repeat).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, GetPydanticSchema, Strict, WithJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError
from pydantic_core import core_schema as cs

# ASCII classes on purpose: `\d` would also match non-ASCII digits.
RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]{1,4})?$"
MAX_TIMESTAMP_LENGTH = 64
MAX_DECIMAL_STRING_LENGTH = 64
MAX_AMOUNT = 10**15
_MAX_AMOUNT_DECIMAL = Decimal(MAX_AMOUNT)
# fullmatch on the anchor-less body: Python's `$` would also match before a trailing newline.
_RFC3339 = re.compile(RFC3339_PATTERN[1:-1])
_DECIMAL = re.compile(DECIMAL_PATTERN[1:-1])
TIMESTAMP_MESSAGE = (
    "must be an RFC 3339 timestamp with an explicit offset (Z or +hh:mm), in years 1-9999 in UTC"
)
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""The instants Python can write back in UTC: ``0001-01-01T00:00:00+05:00`` is a valid RFC 3339
text, but its instant lies in year 0, where a signal's ``occurred_at`` could not be written."""


def _parse_timestamp(value: Any) -> Any:
    """Accept an RFC 3339 string with an explicit offset (or an aware datetime from Python code)."""
    if type(value) is str:
        if len(value) <= MAX_TIMESTAMP_LENGTH and _RFC3339.fullmatch(value):
            if value[-1] == "z":  # fromisoformat only knows the upper-case form
                value = value[:-1] + "Z"
            try:
                return datetime.fromisoformat(value)
            except ValueError:  # e.g. month 13, Feb 30, leap second 60, offset 24:00
                pass
    elif isinstance(value, datetime):
        return value  # AwareDatetime then rejects a naive one
    raise PydanticCustomError("invalid_timestamp", TIMESTAMP_MESSAGE)


_DECIMAL_CACHES: dict[type, dict[Any, Decimal]] = {str: {}, float: {}, int: {}}
"""Accepted wire amounts -> their Decimal, one dict per JSON type (1 == 1.0, but Decimal(1) and
Decimal("1.0") print differently). Prices repeat (a catalogue) and Decimals are immutable.
Bounded: a full dict is cleared, so hostile variety costs a re-parse, never memory."""
_DECIMAL_CACHE_SIZE = 4096


def _parse_decimal(value: Any) -> Decimal:
    """Accept a JSON number or a decimal string as an exact, finite Decimal in [0, 10^15]."""
    cache = _DECIMAL_CACHES.get(type(value))
    if cache is None:
        return _parse_decimal_uncached(value)
    result = cache.get(value)
    if result is None:
        result = _parse_decimal_uncached(value)  # raises for a rejected amount: never cached
        if len(cache) >= _DECIMAL_CACHE_SIZE:
            cache.clear()
        cache[value] = result
    return result


def _parse_decimal_uncached(value: Any) -> Decimal:
    kind = type(value)
    if kind is int:
        result = Decimal(value)
    elif kind is float:
        # repr() is the shortest round-tripping form, so the JSON number 19.99 stays 19.99.
        result = Decimal(repr(value))
    elif kind is str:
        if len(value) > MAX_DECIMAL_STRING_LENGTH or not _DECIMAL.fullmatch(value):
            raise PydanticCustomError(
                "decimal_parsing", "must be a JSON number or a string holding a plain decimal"
            )
        result = Decimal(value)
    elif kind is Decimal:
        result = value
    else:  # bool, None, containers
        raise PydanticCustomError(
            "decimal_type", "must be a JSON number or a string holding a decimal"
        )
    if not result.is_finite() or result < 0 or result > _MAX_AMOUNT_DECIMAL:
        raise PydanticCustomError("decimal_range", "must be a finite decimal between 0 and 10^15")
    if result.is_zero() and result.is_signed():
        result = result.copy_abs()  # -0 would print as "-0" in sums
    return result


def _native(schema: CoreSchema) -> GetPydanticSchema:
    """Use a hand-built pydantic-core schema for a field type (JSON schema given separately)."""
    return GetPydanticSchema(lambda _source, _handler: schema)


_TIMESTAMP_SCHEMA = cs.union_schema(
    [
        # Fast path, all in Rust: the RFC 3339 shape, then speedate reads it (aware only).
        cs.chain_schema(
            [
                cs.str_schema(
                    strict=True, max_length=MAX_TIMESTAMP_LENGTH, pattern=RFC3339_PATTERN
                ),
                cs.datetime_schema(strict=False, tz_constraint="aware", ge=EARLIEST, le=LATEST),
            ]
        ),
        # What speedate refuses but fromisoformat reads (e.g. offset minutes 60-99), and aware
        # datetimes from Python code: the accepted set stays exactly what it was.
        cs.no_info_before_validator_function(
            _parse_timestamp,
            cs.datetime_schema(strict=True, tz_constraint="aware", ge=EARLIEST, le=LATEST),
        ),
    ],
    mode="left_to_right",
    custom_error_type="invalid_timestamp",
    custom_error_message=TIMESTAMP_MESSAGE,
)


def _whole(value: float) -> int:
    if value.is_integer():
        return int(value)
    raise ValueError("not a whole number")  # the union answers int_type


_WHOLE_NUMBER_SCHEMA = cs.union_schema(
    [
        cs.int_schema(strict=True),
        # 9.0 is the number 9 in JSON (RFC 8259 has one number type, and JSON Schema's "integer"
        # includes it): what Java's and Python's doubles write. 9.5, true and "9" stay invalid.
        cs.no_info_after_validator_function(_whole, cs.float_schema(strict=True)),
    ],
    mode="left_to_right",
    custom_error_type="int_type",
)


def whole_number(ge: int, le: int, description: str) -> Any:
    """An integer field in [ge, le] that takes any JSON number with an integral value."""
    return Annotated[
        int,
        _native(cs.chain_schema([_WHOLE_NUMBER_SCHEMA, cs.int_schema(strict=True, ge=ge, le=le)])),
        WithJsonSchema({"type": "integer", "minimum": ge, "maximum": le}),
        Field(description=description),
    ]


_SCHEMA_VERSION_SCHEMA = cs.chain_schema(
    [
        _WHOLE_NUMBER_SCHEMA,  # not an integer (bool, 1.5, "1"): a distinct reason
        cs.custom_error_schema(
            cs.literal_schema([1]),
            custom_error_type="unsupported_schema_version",
            custom_error_message="only schema_version 1 is supported",
        ),
    ]
)


LaxEnum = Strict(False)
"""On an enum field: accept the exact member value (a JSON string), natively. Lax mode adds
nothing else for a str enum fed by orjson: 'WEB', 1, true and null are still rejected."""


Timestamp = Annotated[
    datetime,
    _native(_TIMESTAMP_SCHEMA),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": RFC3339_PATTERN,
            "maxLength": MAX_TIMESTAMP_LENGTH,
        }
    ),
]
"""RFC 3339 with an offset; naive, date-only and epoch-number timestamps are rejected."""

Amount = Annotated[
    Decimal,
    BeforeValidator(_parse_decimal),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT},
                {
                    "type": "string",
                    "pattern": DECIMAL_PATTERN,
                    "maxLength": MAX_DECIMAL_STRING_LENGTH,
                },
            ]
        }
    ),
]
"""A non-negative decimal; JSON numbers are read as IEEE doubles, so send strings for >15 digits."""

AMOUNT_NOTE = (
    " A JSON number or a string holding a decimal; must be finite and 0 <= value <= 10^15"
    " (implementation limit). Strings are kept exact (at most 64 characters, exponent at most"
    " 4 digits); JSON numbers pass through an IEEE-754 double, so send a string when more than"
    " 15 significant digits matter."
)

SchemaVersion = Annotated[
    Literal[1], _native(_SCHEMA_VERSION_SCHEMA), WithJsonSchema({"const": 1, "type": "integer"})
]

MAX_ENTITY_ID_LENGTH = 256
EntityId = Annotated[str, Field(min_length=1, max_length=MAX_ENTITY_ID_LENGTH)]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, three upper-case letters.")
]
Quantity = whole_number(1, 1_000_000, "Units, 1 to 1,000,000.")
ShortText = Annotated[str, Field(min_length=1, max_length=64)]
