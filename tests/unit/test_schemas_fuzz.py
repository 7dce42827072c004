"""Property tests: `decode_record` raises nothing but `EventRejected`, and valid events round-trip."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas import KEY_FIELD, REJECT_REASONS, TOPIC_OF_EVENT_TYPE, EventRejected, decode_record
from schemas.fields import DECIMAL_PATTERN, RFC3339_PATTERN, Timestamp
from tests.strategies import json_values, texts, to_record, valid_event_dicts

# Later than any generated occurred_at (strategies default to before 2025).
NOW = datetime.fromisoformat("2026-01-01T00:00:00+00:00").timestamp()
TOPICS = sorted(KEY_FIELD)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Whole valid events are costly to draw; hypothesis' default count keeps the suite quick.
EVENTS = settings(FUZZ, max_examples=100)

topics = st.sampled_from(TOPICS)
keys = st.none() | st.binary(max_size=20) | texts(1, 20).map(str.encode)


def decode_or_reject(topic: str, key: bytes | None, value: bytes | None) -> Any:
    """Decode; a rejection is a valid outcome, any other exception fails the test."""
    try:
        return decode_record(topic, key, value, now=NOW)
    except EventRejected as exc:
        assert exc.reason in REJECT_REASONS
        assert isinstance(exc.detail, str) and exc.detail
        return exc


@FUZZ
@given(topic=topics, key=keys, value=st.none() | st.binary(max_size=400))
def test_arbitrary_bytes_only_reject(topic: str, key: bytes | None, value: bytes | None) -> None:
    decode_or_reject(topic, key, value)


@FUZZ
@given(topic=topics, key=keys, value=json_values(30))
def test_arbitrary_json_only_reject(topic: str, key: bytes | None, value: Any) -> None:
    decode_or_reject(topic, key, orjson.dumps(value))


envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": json_values(3),
        "event_type": st.sampled_from(sorted(TOPIC_OF_EVENT_TYPE)) | json_values(2),
        "occurred_at": st.from_regex(RFC3339_PATTERN) | json_values(2),
        "schema_version": st.sampled_from([1, 2, True, 1.0, "1"]),
        "source": json_values(2),
        "channel": json_values(2),
        "customer_id": json_values(2),
    },
)
body_like = st.dictionaries(
    st.sampled_from(
        [
            "cart_id",
            "order_id",
            "ticket_id",
            "response_id",
            "product_id",
            "quantity",
            "unit_price",
            "total",
            "amount",
            "currency",
            "step",
            "promised_delivery_at",
            "priority",
            "category",
            "survey",
            "score",
            "touchpoint",
            "comment",
        ]
    ),
    json_values(2) | st.from_regex(DECIMAL_PATTERN) | st.from_regex(RFC3339_PATTERN),
    max_size=8,
)


@FUZZ
@given(topic=topics, key=keys, envelope=envelope_like, body=body_like)
def test_event_shaped_json_only_reject(
    topic: str, key: bytes | None, envelope: dict[str, Any], body: dict[str, Any]
) -> None:
    decode_or_reject(topic, key, orjson.dumps(body | envelope))


@EVENTS
@given(data=valid_event_dicts())
def test_valid_events_decode_and_round_trip(data: dict[str, Any]) -> None:
    topic, key, value = to_record(data)
    decoded = decode_record(topic, key, value, now=NOW)
    assert decoded.event_type == data["event_type"]
    assert TOPIC_OF_EVENT_TYPE[decoded.event_type] == topic
    assert getattr(decoded, KEY_FIELD[topic]).encode() == key
    assert decoded.event_id == data["event_id"]
    assert decoded.source == data["source"]
    assert decoded.channel == data.get("channel", "web")
    assert decoded.customer_id == data.get("customer_id")
    expected_at = datetime.fromisoformat(data["occurred_at"].upper())
    assert decoded.occurred_at == expected_at
    assert decoded.ts == expected_at.timestamp()
    for name in ("unit_price", "total", "amount"):
        if name in data:
            wire = data[name]
            expected = Decimal(repr(wire)) if isinstance(wire, float) else Decimal(wire)
            assert getattr(decoded, name) == expected
    for name in ("quantity", "score", "cart_id", "step", "comment", "category", "touchpoint"):
        if name in data:
            assert getattr(decoded, name) == data[name]


SECRET = "Zq9SECRETq9Z"


@EVENTS
@given(data=valid_event_dicts(), field=st.data(), junk=json_values(3))
def test_corrupted_events_only_reject_and_never_leak(
    data: dict[str, Any], field: st.DataObject, junk: Any
) -> None:
    """Replace one field with junk that embeds a marker; a rejection must not repeat the marker."""
    topic, key, _ = to_record(data)
    name = field.draw(st.sampled_from(sorted(data)))
    data[name] = field.draw(
        st.sampled_from([SECRET, [SECRET], {SECRET: junk}, SECRET * 300, f"2026-01-01{SECRET}"])
    )
    outcome = decode_or_reject(topic, key, orjson.dumps(data))
    if isinstance(outcome, EventRejected):
        assert SECRET not in str(outcome)


@EVENTS
@given(data=valid_event_dicts(), cut=st.integers(min_value=0))
def test_truncated_valid_events_are_rejected(data: dict[str, Any], cut: int) -> None:
    topic, key, value = to_record(data)
    outcome = decode_or_reject(topic, key, value[: cut % len(value)])
    assert isinstance(outcome, EventRejected)
    assert outcome.reason in {"invalid_json", "invalid_encoding"}


@EVENTS
@given(data=valid_event_dicts(), at=st.integers(min_value=0), byte=st.integers(0, 255))
def test_flipped_bytes_only_reject(data: dict[str, Any], at: int, byte: int) -> None:
    topic, key, value = to_record(data)
    mutated = bytearray(value)
    mutated[at % len(mutated)] = byte
    decode_or_reject(topic, key, bytes(mutated))


@FUZZ
@given(text=st.from_regex(RFC3339_PATTERN) | st.text(max_size=40))
def test_any_timestamp_text_only_rejects(text: str) -> None:
    data = {
        "event_id": "e",
        "event_type": "order.shipped",
        "occurred_at": text,
        "schema_version": 1,
        "source": "s",
        "order_id": "o",
        "promised_delivery_at": text,
    }
    decode_or_reject("orders", b"o", orjson.dumps(data))


@FUZZ
@given(amount=st.from_regex(DECIMAL_PATTERN) | st.text(max_size=30) | json_values(2))
def test_any_amount_only_rejects(amount: Any) -> None:
    data = {
        "event_id": "e",
        "event_type": "order.refunded",
        "occurred_at": "2024-01-01T00:00:00Z",
        "schema_version": 1,
        "source": "s",
        "order_id": "o",
        "amount": amount,
        "currency": "EUR",
    }
    outcome = decode_or_reject("orders", b"o", orjson.dumps(data))
    if not isinstance(outcome, EventRejected):
        assert outcome.amount.is_finite() and 0 <= outcome.amount <= 10**15


_TIMESTAMP = TypeAdapter(Timestamp)
_RFC3339_SHAPE = re.compile(RFC3339_PATTERN[1:-1])


def _timestamp_oracle(text: str) -> datetime | None:
    """The rule as written: the RFC 3339 shape, then whatever `fromisoformat` can hold."""
    if len(text) > 64 or not _RFC3339_SHAPE.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:
        return None


@FUZZ
@given(
    text=st.from_regex(RFC3339_PATTERN)
    | st.from_regex(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}$")
    | st.text(max_size=40)
)
def test_native_timestamp_accepts_exactly_what_the_rule_accepts(text: str) -> None:
    expected = _timestamp_oracle(text)
    try:
        got = _TIMESTAMP.validate_python(text, strict=True)
    except ValidationError as exc:
        assert expected is None, text
        assert [e["type"] for e in exc.errors()] == ["invalid_timestamp"]
        return
    assert expected is not None, text
    assert got == expected and got.utcoffset() == expected.utcoffset()
