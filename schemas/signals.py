"""Signals on topic `cx.signals`: facts that call for an action (CONTRACT.md, "Signals").

The pipeline decides them; `cxpipe act` and any shop service consume them. Strict like the
events (no coercion) but unknown extra fields are ignored, so consumers survive newer producers.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from schemas.envelope import ChannelField
from schemas.fields import (
    AMOUNT_NOTE,
    Amount,
    Currency,
    EntityId,
    Quantity,
    SchemaVersion,
    ShortText,
    Timestamp,
)
from schemas.tickets import PriorityField

TOPIC = "signals"
DEAD_LETTER_TOPIC = "signals.dead-letter"

SignalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="Stable id of the fact: the same fact always has the same id (see signal_id).",
    ),
]


class SignalEnvelope(BaseModel):
    """Fields common to every signal (schema_version 1)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    signal_id: SignalId
    signal_type: str
    occurred_at: Annotated[
        Timestamp, Field(description="Event time of the fact, RFC 3339 with an offset.")
    ]
    channel: Annotated[ChannelField, Field(description="Channel of the entity the fact is about.")]
    customer_id: Annotated[
        str | None, Field(max_length=256, description="Opaque customer id, when known.")
    ] = None
    schema_version: Annotated[SchemaVersion, Field(description="1 for this contract.")]

    @property
    def ts(self) -> float:
        """`occurred_at` as epoch seconds."""
        return self.occurred_at.timestamp()

    @property
    def entity_id(self) -> str:
        """The record key of the signal (cart, response, ticket or order id)."""
        return str(getattr(self, KEY_FIELD_OF_SIGNAL[self.signal_type]))


class CartItem(BaseModel):
    """One line still in an abandoned cart."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    product_id: EntityId
    quantity: Quantity
    unit_price: Annotated[Amount, Field(description="Price of one unit." + AMOUNT_NOTE)]
    currency: Currency


class CartAbandoned(SignalEnvelope):
    """Decided when the cart's abandonment is final (last activity + timeout + lateness)."""

    signal_type: Literal["cart.abandoned"]
    cart_id: EntityId
    last_step: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="Last completed checkout step, `none` if no step was completed.",
        ),
    ]
    items: Annotated[
        list[CartItem], Field(max_length=1000, description="What is still in the cart.")
    ]
    value: Annotated[Amount, Field(description="Sum of quantity × unit_price." + AMOUNT_NOTE)]
    currency: Currency


class CartRecovered(SignalEnvelope):
    """An order arrived for an already-abandoned cart (at the order's time)."""

    signal_type: Literal["cart.recovered"]
    cart_id: EntityId
    order_id: EntityId


DetractorSurvey = Literal["nps", "csat"]


class SurveyDetractor(SignalEnvelope):
    """An NPS response 0–6 or a CSAT response 1–2."""

    signal_type: Literal["survey.detractor"]
    response_id: EntityId
    survey: Annotated[DetractorSurvey, Field(description="nps or csat (ces has no detractors).")]
    score: Annotated[int, Field(ge=0, le=6, description="nps 0-6, csat 1-2.")]
    touchpoint: Annotated[ShortText | None, Field(description="Where the survey was shown.")] = None

    @field_validator("score")
    @classmethod
    def _detractor_score(cls, score: int, info: ValidationInfo) -> int:
        if info.data.get("survey") == "csat" and not 1 <= score <= 2:
            raise PydanticCustomError("score_out_of_range", "a csat detractor scores 1-2")
        return score


class TicketSlaBreached(SignalEnvelope):
    """A ticket's SLA due time passed without the reply (first_response) or resolution."""

    signal_type: Literal["ticket.sla_breached"]
    ticket_id: EntityId
    kind: Literal["first_response", "resolution"]
    priority: PriorityField
    due_at: Annotated[Timestamp, Field(description="The SLA due time (= occurred_at).")]


class OrderDeliveryLate(SignalEnvelope):
    """`promised_delivery_at` passed with no `order.delivered` at or before it."""

    signal_type: Literal["order.delivery_late"]
    order_id: EntityId
    promised_delivery_at: Timestamp


SIGNAL_MODELS: tuple[type[SignalEnvelope], ...] = (
    CartAbandoned,
    CartRecovered,
    SurveyDetractor,
    TicketSlaBreached,
    OrderDeliveryLate,
)

Signal = Annotated[
    CartAbandoned | CartRecovered | SurveyDetractor | TicketSlaBreached | OrderDeliveryLate,
    Field(discriminator="signal_type"),
]
"""Any valid signal; `signal_type` picks the model."""

SIGNAL_ADAPTER: TypeAdapter[Signal] = TypeAdapter(Signal)

KEY_FIELD_OF_SIGNAL: dict[str, str] = {
    "cart.abandoned": "cart_id",
    "cart.recovered": "cart_id",
    "survey.detractor": "response_id",
    "ticket.sla_breached": "ticket_id",
    "order.delivery_late": "order_id",
}
"""signal_type -> the field whose value is the record key."""

SIGNAL_TYPES: tuple[str, ...] = tuple(KEY_FIELD_OF_SIGNAL)


def signal_id(signal_type: str, entity_id: str, *fact: str) -> str:
    """Stable id of one fact, shared by the producer and anyone checking it.

    `fact` holds what tells two facts of one entity apart: the `kind` of an SLA breach, the
    promised time of a late delivery (a re-promise is a new fact); nothing for the once-per-cart
    and once-per-response types. A NUL separator keeps ("a", "bc") and ("ab", "c") apart.
    """
    if signal_type not in KEY_FIELD_OF_SIGNAL:
        raise ValueError(f"unknown signal_type {signal_type!r}")
    material = "\0".join((signal_type, entity_id, *fact)).encode()
    return "sig-" + hashlib.sha256(material).hexdigest()[:40]
