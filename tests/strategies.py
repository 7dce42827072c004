"""Hypothesis strategies for contract-valid events, shared by every test that needs traffic.

`valid_event_dicts()` draws raw JSON-ready dicts (the wire form, not models) covering every
event type, optional fields present and absent, unknown extra fields, decimals as ints, floats
and strings, and RFC 3339 timestamps with assorted offsets. `to_record()` turns one into the
(topic, key, value) triple that `schemas.decode_record` takes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import strategies as st

from schemas import (
    KEY_FIELD,
    MODEL_OF_EVENT_TYPE,
    SCORE_RANGES,
    TOPIC_OF_EVENT_TYPE,
    Channel,
    Priority,
    SurveyKind,
)

DEFAULT_MIN_TIME = datetime(2020, 1, 1, tzinfo=UTC)
# In the past for any real clock, so decoding with now=time.time() never hits future_timestamp.
DEFAULT_MAX_TIME = datetime(2025, 1, 1, tzinfo=UTC)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

KNOWN_FIELDS = frozenset(
    name for model in MODEL_OF_EVENT_TYPE.values() for name in model.model_fields
)

# No surrogates: they cannot be encoded as UTF-8 JSON.
_TEXT = st.characters(blacklist_categories=("Cs",))


def texts(min_size: int = 1, max_size: int = 40) -> st.SearchStrategy[str]:
    """Arbitrary Unicode text (ids, names); lengths are in code points, as the contract means."""
    return st.text(_TEXT, min_size=min_size, max_size=max_size)


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Any JSON value orjson can write (ints within 64 bits, finite floats)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | texts(0, 20)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(texts(0, 10), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def timestamps(
    draw: st.DrawFn,
    min_time: datetime = DEFAULT_MIN_TIME,
    max_time: datetime = DEFAULT_MAX_TIME,
) -> str:
    """RFC 3339 text with an offset: Z/z, ±hh:mm, 0-9 fraction digits, T or t."""
    micros = draw(st.integers(_micros(min_time), _micros(max_time)))
    minutes = draw(st.just(0) | st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    local = (_EPOCH + timedelta(microseconds=micros)).astimezone(
        timezone(timedelta(minutes=minutes))
    )
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}{draw(st.sampled_from('Tt'))}"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    digits = draw(st.integers(0, 9))
    if digits:
        # digits beyond the 6th exist on the wire but not in a datetime: they must be dropped
        text += "." + f"{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    if minutes == 0 and draw(st.booleans()):
        return text + draw(st.sampled_from("Zz"))
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def amounts() -> st.SearchStrategy[int | float | str]:
    """A decimal field's wire forms: JSON int, JSON float, or a plain decimal string."""
    return (
        st.integers(0, 10**15)
        | st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)
        | _decimal_strings()
    )


@st.composite
def _decimal_strings(draw: st.DrawFn) -> str:
    """Plain decimal text with 0-12 fraction digits, up to 10^15."""
    places = draw(st.integers(0, 12))
    units = draw(st.integers(0, 10 ** (15 + places)))
    return format(Decimal(units).scaleb(-places), "f")


def _currencies() -> st.SearchStrategy[str]:
    return st.sampled_from(["EUR", "USD", "GBP", "CHF", "JPY"]) | st.text(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=3, max_size=3
    )


def _quantities() -> st.SearchStrategy[int]:
    return st.integers(1, 1_000_000)


def _surveys() -> st.SearchStrategy[dict[str, Any]]:
    def for_kind(kind: SurveyKind) -> st.SearchStrategy[dict[str, Any]]:
        low, high = SCORE_RANGES[kind]
        return st.fixed_dictionaries(
            {"survey": st.just(kind.value), "score": st.integers(low, high)},
            optional={
                "touchpoint": st.none() | texts(1, 64),
                "comment": st.none() | texts(0, 200),
            },
        )

    return st.one_of([for_kind(kind) for kind in SurveyKind])


def _body(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """The type-specific fields of one event type (entity id included)."""
    ids = texts()
    match event_type:
        case "cart.item_added":
            return st.fixed_dictionaries(
                {
                    "cart_id": ids,
                    "product_id": ids,
                    "quantity": _quantities(),
                    "unit_price": amounts(),
                    "currency": _currencies(),
                }
            )
        case "cart.item_removed":
            return st.fixed_dictionaries(
                {"cart_id": ids, "product_id": ids, "quantity": _quantities()}
            )
        case "checkout.started":
            return st.fixed_dictionaries({"cart_id": ids})
        case "checkout.step_completed":
            step = st.sampled_from(["shipping", "payment", "review"]) | texts(1, 64)
            return st.fixed_dictionaries({"cart_id": ids, "step": step})
        case "order.placed":
            return st.fixed_dictionaries(
                {"order_id": ids, "total": amounts(), "currency": _currencies()},
                optional={"cart_id": st.none() | ids},
            )
        case "order.refunded":
            return st.fixed_dictionaries(
                {"order_id": ids, "amount": amounts(), "currency": _currencies()}
            )
        case "order.shipped":
            return st.fixed_dictionaries(
                {
                    "order_id": ids,
                    "promised_delivery_at": timestamps(max_time=datetime(2100, 1, 1, tzinfo=UTC)),
                }
            )
        case "order.delivered":
            return st.fixed_dictionaries({"order_id": ids})
        case "ticket.opened":
            return st.fixed_dictionaries(
                {"ticket_id": ids, "priority": st.sampled_from([p.value for p in Priority])},
                optional={"category": st.none() | texts(1, 64)},
            )
        case "ticket.agent_replied" | "ticket.resolved" | "ticket.reopened":
            return st.fixed_dictionaries({"ticket_id": ids})
        case "survey.submitted":
            return st.tuples(st.fixed_dictionaries({"response_id": ids}), _surveys()).map(
                lambda parts: parts[0] | parts[1]
            )
    raise ValueError(f"unknown event type {event_type!r}")


def _envelope(
    event_type: str, min_time: datetime, max_time: datetime
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": texts(1, 128),
            "event_type": st.just(event_type),
            "occurred_at": timestamps(min_time, max_time),
            "schema_version": st.just(1),
            "source": texts(1, 128),
        },
        optional={
            "channel": st.sampled_from([c.value for c in Channel]),
            "customer_id": st.none() | texts(0, 256),
        },
    )


def _extras() -> st.SearchStrategy[dict[str, Any]]:
    """Unknown fields a newer producer might add; they must be ignored."""
    names = texts(1, 12).filter(lambda name: name not in KNOWN_FIELDS)
    return st.dictionaries(names, json_values(3), max_size=2)


def valid_event_dicts(
    event_types: Iterable[str] | None = None,
    *,
    min_time: datetime = DEFAULT_MIN_TIME,
    max_time: datetime = DEFAULT_MAX_TIME,
) -> st.SearchStrategy[dict[str, Any]]:
    """Contract-valid event dicts, `occurred_at` within [min_time, max_time]."""
    chosen = sorted(event_types) if event_types is not None else sorted(TOPIC_OF_EVENT_TYPE)
    unknown = set(chosen) - TOPIC_OF_EVENT_TYPE.keys()
    if unknown:
        raise ValueError(f"unknown event types {sorted(unknown)}")

    def build(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
        parts = st.tuples(_extras(), _envelope(event_type, min_time, max_time), _body(event_type))
        return parts.map(lambda p: p[0] | p[1] | p[2])

    return st.one_of([build(event_type) for event_type in chosen])


def to_record(event: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """(topic short name, key, value) as a producer following the contract would send it."""
    topic = TOPIC_OF_EVENT_TYPE[event["event_type"]]
    return topic, str(event[KEY_FIELD[topic]]).encode(), orjson.dumps(event)
