"""Events of topic `cx.carts`, keyed by `cart_id`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.envelope import Envelope
from schemas.fields import AMOUNT_NOTE, Amount, Currency, EntityId, Quantity

TOPIC = "carts"
KEY = "cart_id"

CartId = Annotated[EntityId, Field(description="Cart id; the record key of cx.carts.")]
ProductId = Annotated[EntityId, Field(description="Product (SKU) id.")]


class CartItemAdded(Envelope):
    """A product was put into a cart; the first one starts the cart for abandonment."""

    event_type: Literal["cart.item_added"]
    cart_id: CartId
    product_id: ProductId
    quantity: Quantity
    unit_price: Annotated[Amount, Field(description="Price of one unit." + AMOUNT_NOTE)]
    currency: Currency


class CartItemRemoved(Envelope):
    """A product was taken out of a cart (still activity: it keeps the cart alive)."""

    event_type: Literal["cart.item_removed"]
    cart_id: CartId
    product_id: ProductId
    quantity: Quantity


class CheckoutStarted(Envelope):
    """The customer entered checkout; an abandoned cart then counts as checkout abandonment."""

    event_type: Literal["checkout.started"]
    cart_id: CartId


class CheckoutStepCompleted(Envelope):
    """A checkout step was completed; the last one labels a checkout abandonment."""

    event_type: Literal["checkout.step_completed"]
    cart_id: CartId
    step: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="Step name, e.g. shipping, payment, review (a metric label value).",
        ),
    ]


MODELS = (CartItemAdded, CartItemRemoved, CheckoutStarted, CheckoutStepCompleted)
