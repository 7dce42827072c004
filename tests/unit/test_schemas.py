"""The event contract (CONTRACT.md) as enforced by `schemas`: what decodes, what is rejected, why."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

import schemas
from schemas import (
    EVENT_ADAPTER,
    KEY_FIELD,
    MODEL_OF_EVENT_TYPE,
    REJECT_REASONS,
    TOPIC_OF_EVENT_TYPE,
    CartItemAdded,
    CartItemRemoved,
    Channel,
    CheckoutStarted,
    CheckoutStepCompleted,
    Envelope,
    EventRejected,
    OrderDelivered,
    OrderPlaced,
    OrderRefunded,
    OrderShipped,
    Priority,
    SurveyKind,
    SurveySubmitted,
    TicketAgentReplied,
    TicketOpened,
    TicketReopened,
    TicketResolved,
    decode_record,
    export_json_schemas,
)
from schemas.__main__ import main as schemas_main

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()
AT = "2026-01-01T11:59:00Z"

ENVELOPE: dict[str, Any] = {
    "event_id": "evt-1",
    "occurred_at": AT,
    "schema_version": 1,
    "source": "shop-web",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "cart.item_added": {
        "cart_id": "c-1",
        "product_id": "sku-9",
        "quantity": 2,
        "unit_price": 19.99,
        "currency": "EUR",
    },
    "cart.item_removed": {"cart_id": "c-1", "product_id": "sku-9", "quantity": 1},
    "checkout.started": {"cart_id": "c-1"},
    "checkout.step_completed": {"cart_id": "c-1", "step": "shipping"},
    "order.placed": {"order_id": "o-1", "cart_id": "c-1", "total": "39.98", "currency": "EUR"},
    "order.refunded": {"order_id": "o-1", "amount": 5, "currency": "EUR"},
    "order.shipped": {"order_id": "o-1", "promised_delivery_at": "2026-01-03T18:00:00+01:00"},
    "order.delivered": {"order_id": "o-1"},
    "ticket.opened": {"ticket_id": "t-1", "priority": "high", "category": "billing"},
    "ticket.agent_replied": {"ticket_id": "t-1"},
    "ticket.resolved": {"ticket_id": "t-1"},
    "ticket.reopened": {"ticket_id": "t-1"},
    "survey.submitted": {
        "response_id": "r-1",
        "survey": "nps",
        "score": 9,
        "touchpoint": "checkout",
        "comment": "fast delivery",
    },
}

MODEL_CLASSES: dict[str, type[Envelope]] = {
    "cart.item_added": CartItemAdded,
    "cart.item_removed": CartItemRemoved,
    "checkout.started": CheckoutStarted,
    "checkout.step_completed": CheckoutStepCompleted,
    "order.placed": OrderPlaced,
    "order.refunded": OrderRefunded,
    "order.shipped": OrderShipped,
    "order.delivered": OrderDelivered,
    "ticket.opened": TicketOpened,
    "ticket.agent_replied": TicketAgentReplied,
    "ticket.resolved": TicketResolved,
    "ticket.reopened": TicketReopened,
    "survey.submitted": SurveySubmitted,
}


def event(kind: str = "survey.submitted", /, **changes: Any) -> dict[str, Any]:
    """A valid event dict of type `kind`, then `changes` applied (`...` removes a field)."""
    data = {**ENVELOPE, "event_type": kind, **EXAMPLES[kind]}
    for name, value in changes.items():
        if value is ...:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def record(data: dict[str, Any]) -> tuple[str, bytes, bytes]:
    event_type = data.get("event_type")
    topic = (
        TOPIC_OF_EVENT_TYPE.get(event_type, "surveys") if isinstance(event_type, str) else "surveys"
    )
    key = data.get(KEY_FIELD[topic], "k")
    return topic, str(key).encode(), orjson.dumps(data)


def decode(data: dict[str, Any], **kwargs: Any) -> Any:
    topic, key, value = record(data)
    return decode_record(topic, key, value, now=NOW, **kwargs)


def rejected(
    data: dict[str, Any] | None = None, *, raw: bytes | None = None, **kwargs: Any
) -> EventRejected:
    """Decode and return the rejection (failing if the record was accepted)."""
    if raw is not None:
        kwargs.setdefault("topic", "surveys")
        kwargs.setdefault("key", b"r-1")
        with pytest.raises(EventRejected) as info:
            decode_record(kwargs.pop("topic"), kwargs.pop("key"), raw, now=NOW, **kwargs)
        return info.value
    assert data is not None
    with pytest.raises(EventRejected) as info:
        decode(data, **kwargs)
    return info.value


def reason(data: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return rejected(data, **kwargs).reason


# --- public API -----------------------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    assert sorted(schemas.__all__) == sorted(
        [
            "DEFAULT_MAX_BYTES",
            "DEFAULT_MAX_DEPTH",
            "DEFAULT_MAX_FUTURE_SKEW",
            "EVENT_ADAPTER",
            "KEY_FIELD",
            "MODELS_OF_TOPIC",
            "MODEL_OF_EVENT_TYPE",
            "REJECT_REASONS",
            "SCORE_RANGES",
            "SIGNAL_ADAPTER",
            "SIGNAL_MODELS",
            "SIGNAL_TYPES",
            "TOPICS",
            "TOPIC_OF_EVENT_TYPE",
            "CartAbandoned",
            "CartItemAdded",
            "CartItemRemoved",
            "CartRecovered",
            "Channel",
            "CheckoutStarted",
            "CheckoutStepCompleted",
            "Envelope",
            "Event",
            "EventRejected",
            "OrderDelivered",
            "OrderDeliveryLate",
            "OrderPlaced",
            "OrderRefunded",
            "OrderShipped",
            "Priority",
            "Signal",
            "SignalEnvelope",
            "SurveyDetractor",
            "SurveyKind",
            "SurveySubmitted",
            "TicketAgentReplied",
            "TicketOpened",
            "TicketReopened",
            "TicketResolved",
            "TicketSlaBreached",
            "decode_record",
            "export_json_schemas",
            "json_schemas",
            "signal_id",
        ]
    )
    for name in schemas.__all__:
        assert hasattr(schemas, name)


def test_lookup_tables_follow_the_contract() -> None:
    assert KEY_FIELD == {
        "carts": "cart_id",
        "orders": "order_id",
        "tickets": "ticket_id",
        "surveys": "response_id",
    }
    assert TOPIC_OF_EVENT_TYPE == {
        "cart.item_added": "carts",
        "cart.item_removed": "carts",
        "checkout.started": "carts",
        "checkout.step_completed": "carts",
        "order.placed": "orders",
        "order.refunded": "orders",
        "order.shipped": "orders",
        "order.delivered": "orders",
        "ticket.opened": "tickets",
        "ticket.agent_replied": "tickets",
        "ticket.resolved": "tickets",
        "ticket.reopened": "tickets",
        "survey.submitted": "surveys",
    }
    assert MODEL_OF_EVENT_TYPE == MODEL_CLASSES


def test_enums() -> None:
    assert [c.value for c in Channel] == [
        "web",
        "mobile_app",
        "store",
        "marketplace",
        "call_center",
        "chat",
        "email",
        "social",
    ]
    assert [p.value for p in Priority] == ["low", "normal", "high", "urgent"]
    assert [k.value for k in SurveyKind] == ["nps", "csat", "ces"]


# --- valid events ---------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_valid_example_decodes(event_type: str) -> None:
    decoded = decode(event(event_type))
    assert type(decoded) is MODEL_CLASSES[event_type]
    assert decoded.event_type == event_type
    assert decoded.event_id == "evt-1"
    assert decoded.schema_version == 1
    assert decoded.source == "shop-web"
    assert decoded.occurred_at == datetime(2026, 1, 1, 11, 59, tzinfo=UTC)
    assert decoded.customer_id is None
    for name, wire in EXAMPLES[event_type].items():
        value = getattr(decoded, name)
        if isinstance(value, Decimal):
            assert value == Decimal(str(wire))
        elif isinstance(value, datetime):
            assert value == datetime.fromisoformat(wire)
        else:
            assert value == wire


def test_field_values_are_typed() -> None:
    added = decode(event("cart.item_added"))
    assert added.unit_price == Decimal("19.99") and type(added.unit_price) is Decimal
    assert added.quantity == 2
    placed = decode(event("order.placed"))
    assert placed.total == Decimal("39.98")
    shipped = decode(event("order.shipped"))
    assert shipped.promised_delivery_at == datetime(2026, 1, 3, 17, 0, tzinfo=UTC)
    opened = decode(event("ticket.opened"))
    assert opened.priority is Priority.HIGH
    survey = decode(event())
    assert survey.survey is SurveyKind.NPS and survey.score == 9


@pytest.mark.parametrize(
    ("event_type", "field", "wire"),
    [
        ("survey.submitted", "score", 9.0),
        ("survey.submitted", "score", -0.0),
        ("survey.submitted", "schema_version", 1.0),
        ("cart.item_added", "quantity", 2.0),
        ("cart.item_added", "quantity", 2e1),
    ],
)
def test_integers_written_as_doubles_are_integers(event_type: str, field: str, wire: float) -> None:
    """JSON has one number type: 9.0 is the integer 9 (JSON Schema's "integer" includes it, so
    the published schemas accept it too), as Java's and Python's doubles write it."""
    decoded = getattr(decode(event(event_type, **{field: wire})), field)
    assert decoded == wire and type(decoded) is int


def test_optional_fields_may_be_absent_or_null() -> None:
    assert decode(event("order.placed", cart_id=...)).cart_id is None
    assert decode(event("order.placed", cart_id=None)).cart_id is None
    assert decode(event("ticket.opened", category=...)).category is None
    survey = decode(event(touchpoint=None, comment=...))
    assert survey.touchpoint is None and survey.comment is None
    assert decode(event(customer_id="cust-7")).customer_id == "cust-7"
    assert decode(event(customer_id="")).customer_id == ""


def test_channel_defaults_to_web() -> None:
    assert decode(event()).channel is Channel.WEB
    assert decode(event(channel="call_center")).channel is Channel.CALL_CENTER


def test_unknown_fields_are_ignored() -> None:
    decoded = decode(event(brand_new_field={"nested": [1, 2, {"x": None}]}, another=1.5))
    assert not hasattr(decoded, "brand_new_field")
    assert "another" not in decoded.model_dump()


def test_models_are_frozen() -> None:
    decoded = decode(event())
    with pytest.raises(ValidationError):
        decoded.score = 3


def test_ts_is_epoch_seconds() -> None:
    decoded = decode(event(occurred_at="2026-01-01T12:59:00.250+01:00"))
    assert decoded.ts == NOW - 60 + 0.25
    assert decoded.ts == decoded.occurred_at.timestamp()


def test_equality_and_hash_ignore_the_cached_ts() -> None:
    first, second = decode(event()), decode(event())
    assert first.ts > 0  # cached on `first` only
    assert first == second and hash(first) == hash(second)
    assert decode(event(score=8)) != first


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_serialized_model_decodes_to_itself(event_type: str) -> None:
    """What pydantic writes (e.g. a simulator emitting models) must pass our own contract."""
    decoded = decode(event(event_type, channel="chat", occurred_at="2026-01-01T12:58:00+01:00"))
    topic = TOPIC_OF_EVENT_TYPE[event_type]
    key = getattr(decoded, KEY_FIELD[topic]).encode()
    again = decode_record(topic, key, decoded.model_dump_json().encode(), now=NOW)
    assert again == decoded


def test_adapter_and_python_construction() -> None:
    data = event()
    assert EVENT_ADAPTER.validate_python(data) == decode(data)
    built = OrderPlaced(
        event_id="e",
        event_type="order.placed",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        schema_version=1,
        source="s",
        order_id="o",
        total=Decimal("1.50"),
        currency="EUR",
        channel=Channel.STORE,
    )
    assert built.total == Decimal("1.50") and built.channel is Channel.STORE
    with pytest.raises(ValidationError):
        OrderDelivered(
            event_id="e",
            event_type="order.delivered",
            occurred_at=datetime(2026, 1, 1),  # naive
            schema_version=1,
            source="s",
            order_id="o",
        )


# --- decimals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (19.99, Decimal("19.99")),
        ("19.99", Decimal("19.99")),
        (0.1, Decimal("0.1")),
        (0, Decimal(0)),
        ("0", Decimal(0)),
        (-0.0, Decimal(0)),
        ("0.1000000000000000000000001", Decimal("0.1000000000000000000000001")),
        ("1.50", Decimal("1.50")),
        (10**15, Decimal(10**15)),
        (1e15, Decimal(10**15)),
        ("1e15", Decimal(10**15)),
        ("1000000000000000.000", Decimal(10**15)),
        (1e-7, Decimal("1e-7")),
        ("007", Decimal(7)),
    ],
)
def test_decimal_accepts(wire: Any, expected: Decimal) -> None:
    value = decode(event("order.refunded", amount=wire)).amount
    assert value == expected and type(value) is Decimal
    assert not value.is_signed()


@pytest.mark.parametrize(
    "wire",
    [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1e999999",
        "1e16",
        "",
        " 1",
        "1 ",
        "1\n",
        "-1",
        "-0",
        "+1",
        "1.",
        ".5",
        "1,5",
        "1_000",
        "0x10",
        "\u0661\u0662",
        "1" * 65,
        -0.01,
        -1,
        10**15 + 1,
        1.0000000000000002e15,
        1e16,
        1.8e19,
        True,
        False,
        None,
        [],
        {},
    ],
)
def test_decimal_rejects(wire: Any) -> None:
    assert reason(event("order.refunded", amount=wire)) == "invalid_field"


def test_decimal_fields_all_validated() -> None:
    assert reason(event("cart.item_added", unit_price="NaN")) == "invalid_field"
    assert reason(event("order.placed", total=-1)) == "invalid_field"
    assert reason(event("order.refunded", amount=...)) == "missing_field"


# --- other field rules ----------------------------------------------------------------------

LONG = "x" * 257

INVALID_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("cart.item_added", {"quantity": 0}),
    ("cart.item_added", {"quantity": -1}),
    ("cart.item_added", {"quantity": 1.5}),
    ("cart.item_added", {"quantity": 2.5}),
    ("cart.item_added", {"quantity": "2"}),
    ("cart.item_added", {"quantity": True}),
    ("cart.item_added", {"quantity": 1_000_001}),
    ("cart.item_removed", {"quantity": None}),
    ("cart.item_added", {"currency": "eur"}),
    ("cart.item_added", {"currency": "EU"}),
    ("cart.item_added", {"currency": "EURO"}),
    ("cart.item_added", {"currency": "EUR\n"}),
    ("cart.item_added", {"currency": 978}),
    ("cart.item_added", {"product_id": ""}),
    ("cart.item_added", {"cart_id": LONG}),
    ("cart.item_added", {"cart_id": 17}),
    ("checkout.step_completed", {"step": ""}),
    ("checkout.step_completed", {"step": "s" * 65}),
    ("order.placed", {"cart_id": ""}),
    ("order.placed", {"order_id": LONG}),
    ("order.refunded", {"currency": None}),
    ("ticket.opened", {"priority": "critical"}),
    ("ticket.opened", {"priority": "HIGH"}),
    ("ticket.opened", {"priority": 2}),
    ("ticket.opened", {"category": ""}),
    ("ticket.opened", {"category": "c" * 65}),
    ("ticket.resolved", {"ticket_id": ""}),
    ("survey.submitted", {"survey": "ces2"}),
    ("survey.submitted", {"survey": None}),
    ("survey.submitted", {"score": 11}),
    ("survey.submitted", {"score": -1}),
    ("survey.submitted", {"score": 9.5}),
    ("survey.submitted", {"score": 1e300}),
    ("survey.submitted", {"score": "9"}),
    ("survey.submitted", {"score": True}),
    ("survey.submitted", {"survey": "csat", "score": 0}),
    ("survey.submitted", {"survey": "csat", "score": 6}),
    ("survey.submitted", {"survey": "ces", "score": 0}),
    ("survey.submitted", {"survey": "ces", "score": 8}),
    ("survey.submitted", {"touchpoint": ""}),
    ("survey.submitted", {"touchpoint": "t" * 65}),
    ("survey.submitted", {"comment": "c" * 10_001}),
    ("survey.submitted", {"comment": 5}),
    ("survey.submitted", {"response_id": ""}),
    ("survey.submitted", {"event_id": ""}),
    ("survey.submitted", {"event_id": "e" * 129}),
    ("survey.submitted", {"event_id": 12345}),
    ("survey.submitted", {"source": ""}),
    ("survey.submitted", {"source": "s" * 129}),
    ("survey.submitted", {"source": None}),
    ("survey.submitted", {"channel": "fax"}),
    ("survey.submitted", {"channel": "WEB"}),
    ("survey.submitted", {"channel": None}),
    ("survey.submitted", {"customer_id": LONG}),
    ("survey.submitted", {"customer_id": 42}),
    ("survey.submitted", {"schema_version": "1"}),
    ("survey.submitted", {"schema_version": True}),
    ("survey.submitted", {"schema_version": 1.5}),
    ("survey.submitted", {"schema_version": None}),
    ("survey.submitted", {"event_type": 5}),
    ("survey.submitted", {"event_type": None}),
    ("survey.submitted", {"event_type": ["survey.submitted"]}),
]


@pytest.mark.parametrize(("event_type", "changes"), INVALID_FIELDS)
def test_invalid_field(event_type: str, changes: dict[str, Any]) -> None:
    assert reason(event(event_type, **changes)) == "invalid_field"


@pytest.mark.parametrize(("kind", "low", "high"), [("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)])
def test_score_ranges_are_inclusive(kind: str, low: int, high: int) -> None:
    for score in (low, high):
        assert decode(event(survey=kind, score=score)).score == score
    for score in (low - 1, high + 1):
        assert reason(event(survey=kind, score=score)) == "invalid_field"


def test_length_limits_are_inclusive() -> None:
    assert decode(event("order.delivered", order_id="o" * 256)).order_id == "o" * 256
    assert decode(event(event_id="e" * 128, source="s" * 128)).event_id == "e" * 128
    assert decode(event(comment="c" * 10_000, touchpoint="t" * 64)).touchpoint == "t" * 64
    assert decode(event("checkout.step_completed", step="s" * 64)).step == "s" * 64
    # lengths count code points, not bytes
    assert decode(event("order.delivered", order_id="é" * 256)).order_id == "é" * 256


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_required_field_is_required(event_type: str) -> None:
    model = MODEL_CLASSES[event_type]
    required = [name for name, info in model.model_fields.items() if info.is_required()]
    assert {"event_id", "event_type", "occurred_at", "schema_version", "source"} <= set(required)
    for name in required:
        assert reason(event(event_type, **{name: ...})) == "missing_field", name


def test_schema_version() -> None:
    assert reason(event(schema_version=2)) == "unsupported_schema_version"
    assert reason(event(schema_version=0)) == "unsupported_schema_version"
    # a newer version wins over the fields it may have reshaped
    assert reason(event(schema_version=2, score=..., survey="x")) == "unsupported_schema_version"
    assert reason(event(schema_version=...)) == "missing_field"


def test_unknown_event_type() -> None:
    data = event(event_type="survey.skipped")
    assert reason(data) == "unknown_event_type"
    assert reason(event(event_type="")) == "unknown_event_type"
    assert reason(event(event_type=...)) == "missing_field"


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T11:59:00Z", datetime(2026, 1, 1, 11, 59, tzinfo=UTC)),
        ("2026-01-01t11:59:00z", datetime(2026, 1, 1, 11, 59, tzinfo=UTC)),
        ("2026-01-01T12:59:00+01:00", datetime(2026, 1, 1, 11, 59, tzinfo=UTC)),
        ("2026-01-01T06:29:00-05:30", datetime(2026, 1, 1, 11, 59, tzinfo=UTC)),
        ("2026-01-01T11:59:00-00:00", datetime(2026, 1, 1, 11, 59, tzinfo=UTC)),
        ("2026-01-01T11:59:00.5Z", datetime(2026, 1, 1, 11, 59, 0, 500000, tzinfo=UTC)),
        ("2026-01-01T11:59:00.123456789Z", datetime(2026, 1, 1, 11, 59, 0, 123456, tzinfo=UTC)),
        ("2026-01-02T11:58:00+23:59", datetime(2026, 1, 1, 11, 59, tzinfo=UTC)),
    ],
)
def test_timestamp_accepts(text: str, expected: datetime) -> None:
    decoded = decode(event(occurred_at=text))
    assert decoded.occurred_at == expected
    assert decoded.occurred_at.utcoffset() is not None


@pytest.mark.parametrize(
    "wire",
    [
        "2026-01-01T10:00:00",  # naive
        "2026-01-01",  # date only
        "2026-01-01T10:00Z",  # no seconds
        "2026-01-01 10:00:00Z",  # space separator
        "2026-01-01T10:00:00+0100",  # offset without colon
        "2026-01-01T10:00:00+01",
        "2026-01-01T10:00:00 Z",
        "20260101T100000Z",  # ISO 8601 basic format
        "2026-W01-1T10:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T10:00:60Z",  # leap second: RFC 3339 allows it, datetime cannot hold it
        "2026-01-01T10:00:00+24:00",
        "2026-01-01T10:00:00.Z",
        "2026-01-01T10:00:00Z\n",
        " 2026-01-01T10:00:00Z",
        "\u0662026-01-01T10:00:00Z",  # non-ASCII digit
        "0000-01-01T10:00:00Z",
        "0001-01-01T00:00:00+23:59",  # valid text, but its instant is in year 0 (UTC)
        "0001-01-01T05:00:00+05:01",
        "9999-12-31T23:00:00-01:00",  # ... or in year 10000
        "2026-01-01T10:00:00." + "1" * 60 + "Z",  # absurdly long
        "",
        "now",
        "1767261600",
        1767261600,  # epoch seconds
        1767261600.5,
        1767261600000,
        True,
        None,
        ["2026-01-01T10:00:00Z"],
        {"$date": "2026-01-01T10:00:00Z"},
    ],
)
def test_timestamp_rejects(wire: Any) -> None:
    assert reason(event(occurred_at=wire)) == "invalid_timestamp"
    assert reason(event("order.shipped", promised_delivery_at=wire)) == "invalid_timestamp"


@pytest.mark.parametrize(
    "wire", ["0001-01-01T00:00:00Z", "0001-01-01T05:00:00+05:00", "9999-12-31T23:59:59Z"]
)
def test_timestamps_at_the_ends_of_the_representable_range_are_read(wire: str) -> None:
    assert decode(event("order.shipped", promised_delivery_at=wire)).promised_delivery_at


def test_missing_timestamp_is_missing_field() -> None:
    assert reason(event(occurred_at=...)) == "missing_field"
    assert reason(event("order.shipped", promised_delivery_at=...)) == "missing_field"


def at_offset(seconds: float, offset_hours: int = 0) -> str:
    zone = timezone(timedelta(hours=offset_hours))
    return datetime.fromtimestamp(NOW + seconds, tz=zone).isoformat()


def test_future_timestamps() -> None:
    assert decode(event(occurred_at=at_offset(240))).ts == NOW + 240  # 4 min ahead: clock skew
    assert decode(event(occurred_at=at_offset(300))).ts == NOW + 300  # the limit itself
    assert reason(event(occurred_at=at_offset(301))) == "future_timestamp"
    assert reason(event(occurred_at=at_offset(86400 * 365))) == "future_timestamp"
    # the offset is honoured: local 13:00+14:00 is in the past
    assert decode(event(occurred_at=at_offset(-60, offset_hours=14))).ts == NOW - 60
    assert reason(event(occurred_at=at_offset(400, offset_hours=-9))) == "future_timestamp"
    assert decode(event(occurred_at=at_offset(400)), max_future_skew=600).ts == NOW + 400
    assert reason(event(occurred_at=at_offset(1)), max_future_skew=0) == "future_timestamp"


def test_old_timestamps_are_valid() -> None:
    """Lateness is the pipeline's business (counted as late), not a schema error."""
    assert decode(event(occurred_at="2001-01-01T00:00:00Z")).occurred_at.year == 2001


# --- topic and key --------------------------------------------------------------------------


def test_wrong_topic() -> None:
    _, key, value = record(event("order.placed"))
    with pytest.raises(EventRejected) as info:
        decode_record("carts", b"o-1", value, now=NOW)
    assert info.value.reason == "wrong_topic"
    assert decode_record("orders", key, value, now=NOW).order_id == "o-1"


def test_key_checks() -> None:
    _, _, value = record(event())
    for key in (None, b""):
        with pytest.raises(EventRejected) as info:
            decode_record("surveys", key, value, now=NOW)
        assert info.value.reason == "missing_key"
    for key in (b"r-2", b"r-1 ", b"R-1", b"\xff\xfe", b"evt-1"):
        with pytest.raises(EventRejected) as info:
            decode_record("surveys", key, value, now=NOW)
        assert info.value.reason == "key_mismatch"


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_key_is_the_topic_entity_id(event_type: str) -> None:
    data = event(event_type)
    topic = TOPIC_OF_EVENT_TYPE[event_type]
    value = orjson.dumps(data)
    entity = data[KEY_FIELD[topic]]
    assert decode_record(topic, entity.encode(), value, now=NOW).event_type == event_type
    with pytest.raises(EventRejected) as info:
        decode_record(topic, b"other", value, now=NOW)
    assert info.value.reason == "key_mismatch"


def test_non_ascii_key() -> None:
    data = event(response_id="réponse-✓")
    assert decode_record("surveys", "réponse-✓".encode(), orjson.dumps(data), now=NOW)


def test_unknown_topic_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown topic"):
        decode_record("cx.surveys", b"r-1", orjson.dumps(event()), now=NOW)


# --- bytes, JSON and shape ------------------------------------------------------------------


def test_size_limit_is_checked_before_parsing() -> None:
    assert reason(raw=b"\xff" * 300_000) == "too_large"  # garbage, but never parsed
    assert reason(raw=b" " * 262_145) == "too_large"
    value = orjson.dumps(event())
    assert reason(raw=value, max_bytes=len(value) - 1) == "too_large"
    assert decode_record("surveys", b"r-1", value, now=NOW, max_bytes=len(value))
    padded = orjson.dumps(event(pad="x" * (262_144 - len(value) - 10)))
    assert len(padded) <= 262_144
    assert decode_record("surveys", b"r-1", padded, now=NOW)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b" ",
        b"{",
        b'{"a":1',
        b'{"a":1}}',
        b'{"a":1} x',
        b'{"a":1}{"b":2}',
        b"{'a':1}",
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":1e999}',
        b'{"a":-1e400}',
        b'{"a":01}',
        b'{"a":1,}',
        b'{"a":"\\ud800"}',
        b'{"a":"\\x41"}',
        b'{"a":"tab\there"}',
        b"// comment\n{}",
    ],
)
def test_invalid_json(raw: bytes) -> None:
    assert reason(raw=raw) == "invalid_json"


def test_missing_value_is_invalid_json() -> None:
    with pytest.raises(EventRejected) as info:
        decode_record("surveys", b"r-1", None, now=NOW)
    assert info.value.reason == "invalid_json"


def test_truncated_values_are_rejected() -> None:
    value = orjson.dumps(event(comment="prix: 10 €, délai: ✓"))
    for end in range(len(value)):
        assert reason(raw=value[:end]) in {"invalid_json", "invalid_encoding"}
    assert reason(raw=value[: value.index("€".encode()) + 1]) == "invalid_encoding"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"\xff"}',
        b'{"a":"\xc3\x28"}',  # invalid continuation byte
        b'{"a":"\xe0\x80\xaf"}',  # overlong encoding
        b'{"a":"\xed\xa0\x80"}',  # encoded surrogate
        b'{"a":"\xf4\x90\x80\x80"}',  # above U+10FFFF
        b"\xff\xfe{\x00}\x00",  # UTF-16 with BOM
        '{"a":"é"}'.encode("latin-1"),
        b'{"a":1}\xff',
    ],
)
def test_invalid_encoding(raw: bytes) -> None:
    assert reason(raw=raw) == "invalid_encoding"


def test_utf8_bom_is_rejected() -> None:
    assert reason(raw=b"\xef\xbb\xbf" + orjson.dumps(event())) == "invalid_json"


@pytest.mark.parametrize("raw", [b"[]", b"[1,2]", b'"x"', b"1", b"1.5", b"null", b"true"])
def test_not_an_object(raw: bytes) -> None:
    assert reason(raw=raw) == "not_an_object"


def nested(levels: int, kind: str = "object") -> Any:
    """A JSON value whose nesting depth (counting itself) is `levels`."""
    value: Any = {} if kind == "object" else []
    for _ in range(levels - 1):
        value = {"n": value} if kind == "object" else [value]
    return value


def test_depth_limit() -> None:
    # the event object is level 1, so the extra field may nest 63 levels
    assert decode(event(extra=nested(63)))
    assert decode(event(extra=nested(63, "array")))
    assert reason(event(extra=nested(64))) == "too_deep"
    assert reason(event(extra=nested(64, "array"))) == "too_deep"
    assert reason(event(extra=nested(3)), max_depth=3) == "too_deep"
    assert decode(event(extra=nested(2)), max_depth=3)
    assert decode(event(), max_depth=1)
    deep = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert reason(raw=deep) == "too_deep"


def test_depth_is_checked_before_fields() -> None:
    assert reason(raw=orjson.dumps({"x": nested(64)})) == "too_deep"


def test_depth_counts_levels_not_containers() -> None:
    wide = event(extra=[nested(62) for _ in range(50)])
    assert decode(wide)


# --- EventRejected --------------------------------------------------------------------------


def test_every_reject_reason_is_reachable() -> None:
    survey = orjson.dumps(event())
    cases: list[tuple[str, bytes | None, bytes | None, str]] = [
        ("surveys", b"r-1", b"x" * 262_145, "too_large"),
        ("surveys", b"r-1", b"\xff", "invalid_encoding"),
        ("surveys", b"r-1", b"{", "invalid_json"),
        ("surveys", b"r-1", orjson.dumps({"a": nested(64)}), "too_deep"),
        ("surveys", b"r-1", b"[]", "not_an_object"),
        ("surveys", b"r-1", orjson.dumps(event(event_type="x")), "unknown_event_type"),
        ("carts", b"r-1", survey, "wrong_topic"),
        ("surveys", b"r-1", orjson.dumps(event(schema_version=2)), "unsupported_schema_version"),
        ("surveys", b"r-1", orjson.dumps(event(score=...)), "missing_field"),
        ("surveys", b"r-1", orjson.dumps(event(score=99)), "invalid_field"),
        ("surveys", b"r-1", orjson.dumps(event(occurred_at="2026-01-01")), "invalid_timestamp"),
        ("surveys", b"r-1", orjson.dumps(event(occurred_at=at_offset(3600))), "future_timestamp"),
        ("surveys", None, survey, "missing_key"),
        ("surveys", b"r-2", survey, "key_mismatch"),
    ]
    seen = set()
    for topic, key, value, expected in cases:
        with pytest.raises(EventRejected) as info:
            decode_record(topic, key, value, now=NOW)
        assert info.value.reason == expected
        assert info.value.detail
        seen.add(info.value.reason)
    assert seen == REJECT_REASONS
    assert all(r.isidentifier() and r.islower() and len(r) <= 32 for r in REJECT_REASONS)


def test_event_rejected_is_a_plain_exception() -> None:
    exc = EventRejected("invalid_field", "field 'score' is out of range")
    assert str(exc) == "invalid_field: field 'score' is out of range"
    again = pickle.loads(pickle.dumps(exc))
    assert (again.reason, again.detail) == (exc.reason, exc.detail)
    with pytest.raises(ValueError):
        EventRejected("something_else", "unbounded reasons would explode metric cardinality")


SECRET = "SECRET-7f3a"

LEAK_CASES: list[tuple[str, dict[str, Any]]] = [
    ("survey.submitted", {"event_type": SECRET}),
    ("survey.submitted", {"channel": SECRET}),
    ("survey.submitted", {"survey": SECRET}),
    ("survey.submitted", {"score": SECRET}),
    ("survey.submitted", {"schema_version": SECRET}),
    ("survey.submitted", {"occurred_at": SECRET}),
    ("survey.submitted", {"occurred_at": "2026-01-01T10:00:00" + SECRET}),
    ("survey.submitted", {"comment": SECRET * 2000}),
    ("survey.submitted", {"customer_id": SECRET * 100}),
    ("survey.submitted", {"response_id": [SECRET]}),
    ("survey.submitted", {"touchpoint": {SECRET: SECRET}}),
    ("survey.submitted", {"event_id": SECRET * 50}),
    ("order.placed", {"total": SECRET}),
    ("order.placed", {"currency": SECRET}),
    ("ticket.opened", {"priority": SECRET}),
]


@pytest.mark.parametrize(("event_type", "changes"), LEAK_CASES)
def test_detail_never_contains_payload_values(event_type: str, changes: dict[str, Any]) -> None:
    exc = rejected(event(event_type, **changes))
    assert SECRET not in exc.detail
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)


def test_detail_names_the_field() -> None:
    assert "score" in rejected(event(score=42)).detail
    assert "currency" in rejected(event("order.placed", currency="eur")).detail
    assert "occurred_at" in rejected(event(occurred_at="yesterday")).detail
    assert "total" in rejected(event("order.placed", total=...)).detail


def test_detail_of_key_mismatch_omits_the_key() -> None:
    with pytest.raises(EventRejected) as info:
        decode_record("surveys", SECRET.encode(), orjson.dumps(event()), now=NOW)
    assert SECRET not in str(info.value)
    assert "r-1" not in info.value.detail


# --- JSON Schema export ---------------------------------------------------------------------

SCHEMA_DIR = ROOT / "schemas" / "json"


def test_committed_json_schemas_are_up_to_date(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    names = sorted(path.name for path in written)
    assert names == [
        "carts.json",
        "event.json",
        "orders.json",
        "signals.json",
        "surveys.json",
        "tickets.json",
    ]
    assert sorted(path.name for path in SCHEMA_DIR.glob("*.json")) == names, (
        "run `python -m schemas export schemas/json`"
    )
    for path in written:
        assert path.read_bytes() == (SCHEMA_DIR / path.name).read_bytes(), (
            f"{path.name} is stale: run `python -m schemas export schemas/json`"
        )


def test_export_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in export_json_schemas(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in export_json_schemas(tmp_path / "b")}
    assert first == second
    for text in first.values():
        assert text.endswith(b"}\n") and not text.endswith(b"\n\n")


@pytest.mark.parametrize("topic", ["carts", "orders", "tickets", "surveys"])
def test_topic_schema_is_a_union_of_its_event_types(topic: str) -> None:
    schema = orjson.loads((SCHEMA_DIR / f"{topic}.json").read_bytes())
    types = sorted(t for t, owner in TOPIC_OF_EVENT_TYPE.items() if owner == topic)
    assert sorted(schema["discriminator"]["mapping"]) == types
    assert schema["discriminator"]["propertyName"] == "event_type"
    assert len(schema["oneOf"]) == len(types)
    for event_type in types:
        ref = schema["discriminator"]["mapping"][event_type]
        definition = schema["$defs"][ref.rsplit("/", 1)[1]]
        assert definition["properties"]["event_type"]["const"] == event_type
        model = MODEL_CLASSES[event_type]
        required = {n for n, info in model.model_fields.items() if info.is_required()}
        assert set(definition["required"]) == required
        assert definition["properties"]["channel"]["default"] == "web"
        assert definition["properties"]["schema_version"]["const"] == 1
        assert "additionalProperties" not in definition  # unknown fields are allowed


def test_event_schema_covers_everything() -> None:
    schema = orjson.loads((SCHEMA_DIR / "event.json").read_bytes())
    assert sorted(schema["discriminator"]["mapping"]) == sorted(TOPIC_OF_EVENT_TYPE)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    placed = schema["$defs"]["OrderPlaced"]["properties"]
    assert placed["total"]["anyOf"][0] == {"maximum": 10**15, "minimum": 0, "type": "number"}
    assert placed["occurred_at"]["format"] == "date-time"
    assert schema["$defs"]["SurveySubmitted"]["allOf"]  # per-kind score ranges


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas_main(["export", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in SCHEMA_DIR.glob("*.json")
    )
    assert "event.json" in capsys.readouterr().out


def test_python_dash_m_schemas(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "schemas", "export", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "event.json").read_bytes() == (SCHEMA_DIR / "event.json").read_bytes()
