"""Segment Tracking API messages -> contract events (Segment e-commerce spec v2, CONTRACT.md).

Pure and total: every message maps to an event dict, is ignored (not our business), or is
rejected with a reason from the contract's vocabulary. The event dict is then validated by the
same decoder as any other event, so a mapped event obeys exactly the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas import Channel, EventRejected

SOURCE = "segment"
_CHANNELS = frozenset(channel.value for channel in Channel)
_MOBILE_DEVICES = frozenset({"ios", "android", "mobile"})
# RFC 3339 without an offset: Segment reads such a timestamp as UTC, and so do we.
_NAIVE_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
)


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed message the pipeline does not count (page views, unmapped events)."""

    reason: str  # "non_track" or "unmapped_event": a bounded metric label


Mapped = dict[str, Any] | Ignored


def _require(properties: dict[str, Any], name: str, event: str) -> Any:
    value = properties.get(name)
    if value is None:
        raise EventRejected("missing_field", f"property '{name}' of '{event}' is required")
    return value


def _first(properties: dict[str, Any], names: tuple[str, str], event: str) -> Any:
    for name in names:
        if properties.get(name) is not None:
            return properties[name]
    raise EventRejected(
        "missing_field", f"property '{names[0]}' (or '{names[1]}') of '{event}' is required"
    )


def _step(properties: dict[str, Any], event: str) -> Any:
    if properties.get("step_name") is not None:
        return properties["step_name"]
    step = _require(properties, "step", event)
    return str(step) if isinstance(step, int | float | str) and not isinstance(step, bool) else step


def _quantity(properties: dict[str, Any]) -> Any:
    """Default 1 when absent or null, as every optional property here treats null."""
    value = properties.get("quantity")
    return 1 if value is None else value


FieldMapper = Callable[[dict[str, Any], str, str], dict[str, Any]]


def _item_added(p: dict[str, Any], event: str, currency: str) -> dict[str, Any]:
    return {
        "cart_id": _require(p, "cart_id", event),
        "product_id": _require(p, "product_id", event),
        "quantity": _quantity(p),
        "unit_price": _require(p, "price", event),
        "currency": p.get("currency") or currency,
    }


def _item_removed(p: dict[str, Any], event: str, currency: str) -> dict[str, Any]:
    return {
        "cart_id": _require(p, "cart_id", event),
        "product_id": _require(p, "product_id", event),
        "quantity": _quantity(p),
    }


def _checkout_started(p: dict[str, Any], event: str, currency: str) -> dict[str, Any]:
    return {"cart_id": _require(p, "cart_id", event)}


def _step_completed(p: dict[str, Any], event: str, currency: str) -> dict[str, Any]:
    return {"cart_id": _require(p, "cart_id", event), "step": _step(p, event)}


def _order_completed(p: dict[str, Any], event: str, currency: str) -> dict[str, Any]:
    fields = {
        "order_id": _require(p, "order_id", event),
        "total": _first(p, ("total", "revenue"), event),
        "currency": p.get("currency") or currency,
    }
    if p.get("cart_id") is not None:
        fields["cart_id"] = p["cart_id"]
    return fields


def _order_refunded(p: dict[str, Any], event: str, currency: str) -> dict[str, Any]:
    return {
        "order_id": _require(p, "order_id", event),
        "amount": _first(p, ("total", "revenue"), event),
        "currency": p.get("currency") or currency,
    }


MAPPING: dict[str, tuple[str, FieldMapper]] = {
    "Product Added": ("cart.item_added", _item_added),
    "Product Removed": ("cart.item_removed", _item_removed),
    "Checkout Started": ("checkout.started", _checkout_started),
    "Checkout Step Completed": ("checkout.step_completed", _step_completed),
    "Order Completed": ("order.placed", _order_completed),
    "Order Refunded": ("order.refunded", _order_refunded),
}
"""Segment ``event`` -> (contract ``event_type``, builder of its fields from ``properties``)."""


def channel_of(message: dict[str, Any]) -> str:
    """``properties.channel`` if it is a contract channel, else mobile for apps, else web."""
    properties = message.get("properties")
    claimed = properties.get("channel") if isinstance(properties, dict) else None
    if isinstance(claimed, str) and claimed in _CHANNELS:
        return claimed
    context = message.get("context")
    if isinstance(context, dict):
        device = context.get("device")
        kind = device.get("type") if isinstance(device, dict) else None
        if (isinstance(kind, str) and kind.lower() in _MOBILE_DEVICES) or context.get("app"):
            return Channel.MOBILE_APP.value
    return Channel.WEB.value


def occurred_at_of(message: dict[str, Any]) -> Any:
    """``timestamp``, else ``originalTimestamp``; a timestamp without an offset is UTC.

    Anything that is not a naive RFC 3339 string passes through unchanged, so the decoder
    judges it (and rejects a bad one as ``invalid_timestamp``).
    """
    for name in ("timestamp", "originalTimestamp"):
        value = message.get(name)
        if value is None:
            continue
        if isinstance(value, str) and _NAIVE_TIMESTAMP.fullmatch(value):
            return value + "Z"
        return value
    raise EventRejected("missing_field", "message field 'timestamp' is required")


def map_message(message: Any, default_currency: str, default_type: str | None = None) -> Mapped:
    """One Segment message -> a contract event dict, :class:`Ignored`, or ``EventRejected``.

    ``default_type`` is the type the route implies (``/v1/track`` -> ``"track"``), since
    Segment's single-message endpoints do not require a ``type`` field.
    """
    if not isinstance(message, dict):
        raise EventRejected("not_an_object", "message is not a JSON object")
    kind = message.get("type", default_type)
    if kind != "track":
        if kind is None:
            raise EventRejected("missing_field", "message field 'type' is required")
        return Ignored("non_track")
    name = message.get("event")
    mapping = MAPPING.get(name) if isinstance(name, str) else None
    if mapping is None:
        return Ignored("unmapped_event")
    event_type, build = mapping
    properties = message.get("properties") or {}
    if not isinstance(properties, dict):
        raise EventRejected("invalid_field", "message field 'properties' must be an object")
    message_id = message.get("messageId")
    if message_id is None:
        raise EventRejected("missing_field", "message field 'messageId' is required")
    event: dict[str, Any] = {
        "event_id": message_id,
        "event_type": event_type,
        "occurred_at": occurred_at_of(message),
        "schema_version": 1,
        "source": SOURCE,
        "channel": channel_of(message),
        **build(properties, name, default_currency),
    }
    user_id = message.get("userId")
    if user_id is not None:
        # the Segment SDKs accept numeric ids; the contract's customer_id is a string
        is_number = isinstance(user_id, int) and not isinstance(user_id, bool)
        event["customer_id"] = str(user_id) if is_number else user_id
    return event
