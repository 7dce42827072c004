"""The cx-pipeline event contract (see CONTRACT.md) as strict pydantic v2 models.

`decode_record` turns a Kafka record into one of the event models or raises `EventRejected`
with a short, bounded `reason`; `export_json_schemas` publishes the contract as JSON Schema.
"""

from schemas.carts import CartItemAdded, CartItemRemoved, CheckoutStarted, CheckoutStepCompleted
from schemas.decode import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FUTURE_SKEW,
    decode_record,
)
from schemas.envelope import Channel, Envelope
from schemas.errors import REJECT_REASONS, EventRejected
from schemas.export import export_json_schemas, json_schemas
from schemas.orders import OrderDelivered, OrderPlaced, OrderRefunded, OrderShipped
from schemas.registry import (
    EVENT_ADAPTER,
    KEY_FIELD,
    MODEL_OF_EVENT_TYPE,
    MODELS_OF_TOPIC,
    TOPIC_OF_EVENT_TYPE,
    TOPICS,
    Event,
)
from schemas.surveys import SCORE_RANGES, SurveyKind, SurveySubmitted
from schemas.tickets import (
    Priority,
    TicketAgentReplied,
    TicketOpened,
    TicketReopened,
    TicketResolved,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_FUTURE_SKEW",
    "EVENT_ADAPTER",
    "KEY_FIELD",
    "MODELS_OF_TOPIC",
    "MODEL_OF_EVENT_TYPE",
    "REJECT_REASONS",
    "SCORE_RANGES",
    "TOPICS",
    "TOPIC_OF_EVENT_TYPE",
    "CartItemAdded",
    "CartItemRemoved",
    "Channel",
    "CheckoutStarted",
    "CheckoutStepCompleted",
    "Envelope",
    "Event",
    "EventRejected",
    "OrderDelivered",
    "OrderPlaced",
    "OrderRefunded",
    "OrderShipped",
    "Priority",
    "SurveyKind",
    "SurveySubmitted",
    "TicketAgentReplied",
    "TicketOpened",
    "TicketReopened",
    "TicketResolved",
    "decode_record",
    "export_json_schemas",
    "json_schemas",
]
