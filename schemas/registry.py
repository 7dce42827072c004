"""The `Event` union and the lookup tables that tie event types to topics and record keys."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from schemas import carts, orders, surveys, tickets
from schemas.carts import CartItemAdded, CartItemRemoved, CheckoutStarted, CheckoutStepCompleted
from schemas.envelope import Envelope
from schemas.orders import OrderDelivered, OrderPlaced, OrderRefunded, OrderShipped
from schemas.surveys import SurveySubmitted
from schemas.tickets import TicketAgentReplied, TicketOpened, TicketReopened, TicketResolved

Event = Annotated[
    CartItemAdded
    | CartItemRemoved
    | CheckoutStarted
    | CheckoutStepCompleted
    | OrderPlaced
    | OrderRefunded
    | OrderShipped
    | OrderDelivered
    | TicketOpened
    | TicketAgentReplied
    | TicketResolved
    | TicketReopened
    | SurveySubmitted,
    Field(discriminator="event_type"),
]
"""Any valid event; `event_type` picks the model, so validation never tries the others."""

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

_TOPIC_MODULES = (carts, orders, tickets, surveys)

TOPICS: tuple[str, ...] = tuple(module.TOPIC for module in _TOPIC_MODULES)
"""Topic short names; the full name is the configured prefix (default `cx.`) plus this."""

KEY_FIELD: dict[str, str] = {module.TOPIC: module.KEY for module in _TOPIC_MODULES}
"""Topic short name -> the entity-id field that must equal the record key."""

MODELS_OF_TOPIC: dict[str, tuple[type[Envelope], ...]] = {
    module.TOPIC: module.MODELS for module in _TOPIC_MODULES
}


def _event_type_of(model: type[Envelope]) -> str:
    """The single Literal value of a model's `event_type` annotation."""
    (value,) = model.model_fields["event_type"].annotation.__args__  # type: ignore[union-attr]
    return value


MODEL_OF_EVENT_TYPE: dict[str, type[Envelope]] = {
    _event_type_of(model): model for models in MODELS_OF_TOPIC.values() for model in models
}

TOPIC_OF_EVENT_TYPE: dict[str, str] = {
    _event_type_of(model): topic for topic, models in MODELS_OF_TOPIC.items() for model in models
}
"""event_type -> topic short name; an event on another topic is rejected as `wrong_topic`."""
