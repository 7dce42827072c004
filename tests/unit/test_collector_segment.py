"""Segment message -> contract event mapping (CONTRACT.md, "HTTP intake"), and the judge that
runs every mapped or posted event through the worker's own decoder."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.collector.segment import Ignored, channel_of, map_message, occurred_at_of
from pipeline.collector.triage import Judge
from pipeline.settings import Settings
from schemas import REJECT_REASONS, EventRejected, decode_record
from tests.strategies import json_values, to_record, valid_event_dicts

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
STAMP = "2026-11-30T11:59:00.000Z"


def track(event: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "properties": properties,
        "messageId": "m-1",
        "timestamp": STAMP,
        **extra,
    }


ENVELOPE = {
    "event_id": "m-1",
    "occurred_at": STAMP,
    "schema_version": 1,
    "source": "segment",
    "channel": "web",
}


@pytest.mark.parametrize(
    ("segment_event", "properties", "expected"),
    [
        (
            "Product Added",
            {"cart_id": "c", "product_id": "p", "price": 9.5},
            {"event_type": "cart.item_added", "cart_id": "c", "product_id": "p", "quantity": 1}
            | {"unit_price": 9.5, "currency": "USD"},
        ),
        (
            "Product Added",
            {"cart_id": "c", "product_id": "p", "price": "2.00", "quantity": 3, "currency": "EUR"},
            {"event_type": "cart.item_added", "cart_id": "c", "product_id": "p", "quantity": 3}
            | {"unit_price": "2.00", "currency": "EUR"},
        ),
        (
            "Product Removed",
            {"cart_id": "c", "product_id": "p"},
            {"event_type": "cart.item_removed", "cart_id": "c", "product_id": "p", "quantity": 1},
        ),
        (  # null is absent, as for every optional property
            "Product Removed",
            {"cart_id": "c", "product_id": "p", "quantity": None},
            {"event_type": "cart.item_removed", "cart_id": "c", "product_id": "p", "quantity": 1},
        ),
        ("Checkout Started", {"cart_id": "c"}, {"event_type": "checkout.started", "cart_id": "c"}),
        (
            "Checkout Step Completed",
            {"cart_id": "c", "step_name": "payment", "step": 2},
            {"event_type": "checkout.step_completed", "cart_id": "c", "step": "payment"},
        ),
        (
            "Checkout Step Completed",
            {"cart_id": "c", "step": 2},
            {"event_type": "checkout.step_completed", "cart_id": "c", "step": "2"},
        ),
        (
            "Order Completed",
            {"order_id": "o", "revenue": 10, "total": 12, "cart_id": "c"},
            {"event_type": "order.placed", "order_id": "o", "total": 12, "currency": "USD"}
            | {"cart_id": "c"},
        ),
        (
            "Order Completed",
            {"order_id": "o", "revenue": "10.00", "currency": "GBP"},
            {"event_type": "order.placed", "order_id": "o", "total": "10.00", "currency": "GBP"},
        ),
        (
            "Order Refunded",
            {"order_id": "o", "revenue": 4},
            {"event_type": "order.refunded", "order_id": "o", "amount": 4, "currency": "USD"},
        ),
    ],
)
def test_mapping_table_with_defaults(
    segment_event: str, properties: dict[str, Any], expected: dict[str, Any]
) -> None:
    mapped = map_message(track(segment_event, properties), "USD")
    assert mapped == ENVELOPE | expected
    decode_record(*to_record(mapped), now=NOW)  # and the worker accepts it


def test_default_currency_is_configurable_and_user_id_becomes_customer_id() -> None:
    message = track("Order Completed", {"order_id": "o", "total": 1}, userId=42)
    mapped = map_message(message, "CHF")
    assert isinstance(mapped, dict)
    assert (mapped["currency"], mapped["customer_id"]) == ("CHF", "42")
    assert "customer_id" not in map_message(track("Checkout Started", {"cart_id": "c"}), "USD")


@pytest.mark.parametrize(
    ("message", "channel"),
    [
        ({"properties": {"channel": "store"}, "context": {"app": {"name": "x"}}}, "store"),
        ({"properties": {"channel": "tv"}, "context": {"device": {"type": "ios"}}}, "mobile_app"),
        ({"context": {"device": {"type": "android"}}}, "mobile_app"),
        ({"context": {"device": {"type": "Mobile"}}}, "mobile_app"),
        ({"context": {"app": {"name": "shop", "version": "1.2"}}}, "mobile_app"),
        ({"context": {"device": {"type": "tv"}}}, "web"),
        ({"context": {"userAgent": "Mozilla/5.0"}}, "web"),
        ({"properties": {"channel": 7}}, "web"),
        ({}, "web"),
    ],
)
def test_channel_derivation(message: dict[str, Any], channel: str) -> None:
    assert channel_of(message) == channel


@pytest.mark.parametrize(
    ("message", "occurred_at"),
    [
        ({"timestamp": "2026-11-30T10:00:00"}, "2026-11-30T10:00:00Z"),
        ({"timestamp": "2026-11-30T10:00:00.123456"}, "2026-11-30T10:00:00.123456Z"),
        ({"timestamp": "2026-11-30T10:00:00+02:00"}, "2026-11-30T10:00:00+02:00"),
        ({"originalTimestamp": "2026-11-30T09:00:00"}, "2026-11-30T09:00:00Z"),
        ({"timestamp": "2026-11-30T10:00:00Z", "originalTimestamp": "x"}, "2026-11-30T10:00:00Z"),
        ({"timestamp": 1764496800}, 1764496800),  # passed on, for the decoder to reject
    ],
)
def test_timestamp_without_offset_is_utc(message: dict[str, Any], occurred_at: Any) -> None:
    assert occurred_at_of(message) == occurred_at


def test_naive_timestamp_means_the_same_instant_as_utc() -> None:
    mapped = map_message(
        track("Checkout Started", {"cart_id": "c"}, timestamp="2026-11-30T11:59:00"), "USD"
    )
    event = decode_record(*to_record(mapped), now=NOW)  # type: ignore[arg-type]
    assert event.ts == datetime(2026, 11, 30, 11, 59, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("segment_event", "properties", "named"),
    [
        ("Product Added", {"product_id": "p", "price": 1}, "cart_id"),
        ("Product Added", {"cart_id": "c", "price": 1}, "product_id"),
        ("Product Added", {"cart_id": "c", "product_id": "p"}, "price"),
        ("Checkout Step Completed", {"cart_id": "c"}, "step"),
        ("Order Completed", {"order_id": "o"}, "total"),
        ("Order Refunded", {"total": 3}, "order_id"),
    ],
)
def test_missing_property_is_missing_field_naming_it(
    segment_event: str, properties: dict[str, Any], named: str
) -> None:
    with pytest.raises(EventRejected) as rejected:
        map_message(track(segment_event, properties), "USD")
    assert rejected.value.reason == "missing_field"
    assert f"'{named}'" in rejected.value.detail


def test_other_types_and_unmapped_events_are_ignored_not_rejected() -> None:
    for kind in ("identify", "page", "screen", "group", "alias"):
        assert map_message({"type": kind, "messageId": "m"}, "USD") == Ignored("non_track")
    assert map_message(track("Product Viewed", {}), "USD") == Ignored("unmapped_event")
    # /v1/track does not require "type"; the route implies it
    untyped = {k: v for k, v in track("Checkout Started", {"cart_id": "c"}).items() if k != "type"}
    assert isinstance(map_message(untyped, "USD", default_type="track"), dict)
    with pytest.raises(EventRejected, match="type"):
        map_message(untyped, "USD")


JUDGE = Judge(Settings(), "USD")
segment_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "page", 3]),
        "event": st.sampled_from(["Product Added", "Order Completed", "Order Refunded", "x"]),
        "messageId": json_values(1),
        "timestamp": st.one_of(json_values(1), st.just(STAMP)),
        "userId": json_values(1),
        "properties": st.one_of(
            json_values(2),
            st.dictionaries(
                st.sampled_from(["cart_id", "product_id", "price", "order_id", "total", "revenue"]),
                json_values(1),
            ),
        ),
        "context": json_values(3),
    },
)


@given(st.one_of(segment_like, json_values(4)))
def test_any_message_is_mapped_ignored_or_rejected_with_a_contract_reason(message: Any) -> None:
    triage = JUDGE.segment([message], NOW, None)
    outcomes = len(triage.accepted) + len(triage.rejected) + sum(triage.ignored.values())
    assert outcomes == 1
    for rejection in triage.rejected:
        assert rejection.reason in REJECT_REASONS
        assert orjson.loads(rejection.value) == message  # the dead letter keeps the message


@given(valid_event_dicts())
def test_judge_accepts_what_the_worker_accepts_with_the_same_key(event: dict[str, Any]) -> None:
    topic, key, value = to_record(event)
    triage = JUDGE.events([event], time.time())
    if triage.rejected:  # only the clock-dependent rule may differ from a fixed `now`
        assert triage.rejected[0].reason == "future_timestamp"
        return
    (record,) = triage.accepted
    assert (record.topic, record.key) == (topic, key)
    assert orjson.loads(record.value) == orjson.loads(value)


@given(
    valid_event_dicts(), st.sampled_from(["event_type", "occurred_at", "source"]), json_values(1)
)
def test_judge_rejects_with_the_worker_reason(event: dict[str, Any], field: str, junk: Any) -> None:
    broken = event | {field: junk}
    triage = JUDGE.events([broken], NOW)
    try:
        topic, key, value = to_record(broken)
        decode_record(topic, key, value, now=NOW)
        expected = None
    except (KeyError, TypeError):  # no topic for this event_type: the decoder's reason decides
        expected = "unknown"
    except EventRejected as rejected:
        expected = rejected.reason
    if expected is None:
        assert triage.accepted and not triage.rejected
    elif expected != "unknown":
        assert triage.rejected[0].reason == expected
    else:
        assert triage.rejected[0].reason in {"unknown_event_type", "invalid_field", "missing_field"}


def _nested(depth: int) -> list[Any]:
    """A JSON array ``depth`` levels deep, as orjson parses it from a request body."""
    return orjson.loads(b"[" * depth + b"]" * depth)


@pytest.mark.parametrize("depth", [255, 600, 1000])
def test_items_nested_past_what_orjson_writes_are_dead_lettered_as_too_deep(depth: int) -> None:
    """orjson reads 1024 levels but writes 254: re-serialising such an item failed the whole
    request with a 500. It is one rejected item, kept whole for the dead-letter topic."""
    posted = {
        "event_id": "e-1",
        "event_type": "checkout.started",
        "occurred_at": STAMP,
        "schema_version": 1,
        "source": "web",
        "cart_id": "c-1",
        "extra": _nested(depth),
    }
    segment = track("Checkout Started", {"cart_id": _nested(depth)})
    no_id = {k: v for k, v in segment.items() if k != "messageId"}  # refused before mapping
    for triage, reason in (
        (JUDGE.events([posted], NOW), "too_deep"),
        (JUDGE.segment([segment], NOW, None), "too_deep"),
        (JUDGE.segment([no_id], NOW, None), "missing_field"),
    ):
        (rejection,) = triage.rejected
        assert not triage.accepted and rejection.reason == reason
        assert rejection.value.count(b"[") >= depth  # the dead letter keeps all of it
