"""Events of topic `cx.orders`, keyed by `order_id`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.envelope import Envelope
from schemas.fields import AMOUNT_NOTE, Amount, Currency, EntityId, Timestamp

TOPIC = "orders"
KEY = "order_id"

OrderId = Annotated[EntityId, Field(description="Order id; the record key of cx.orders.")]


class OrderPlaced(Envelope):
    """An order was placed; names its cart so the cart counts as converted (or recovered)."""

    event_type: Literal["order.placed"]
    order_id: OrderId
    cart_id: Annotated[
        EntityId | None,
        Field(description="The cart this order converts, if it came from one."),
    ] = None
    total: Annotated[Amount, Field(description="Order total." + AMOUNT_NOTE)]
    currency: Currency


class OrderRefunded(Envelope):
    """Money was returned to the customer (possibly partially, possibly more than once)."""

    event_type: Literal["order.refunded"]
    order_id: OrderId
    amount: Annotated[Amount, Field(description="Refunded amount." + AMOUNT_NOTE)]
    currency: Currency


class OrderShipped(Envelope):
    """The order left the warehouse with a delivery promise, used for the on-time ratio."""

    event_type: Literal["order.shipped"]
    order_id: OrderId
    promised_delivery_at: Annotated[
        Timestamp, Field(description="Promised delivery time, RFC 3339 with an offset.")
    ]


class OrderDelivered(Envelope):
    """The order reached the customer; on time if by its `promised_delivery_at`."""

    event_type: Literal["order.delivered"]
    order_id: OrderId


MODELS = (OrderPlaced, OrderRefunded, OrderShipped, OrderDelivered)
