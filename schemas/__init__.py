"""The cx-pipeline event contract (see CONTRACT.md) as strict pydantic v2 models.

`decode_record` turns a Kafka record into one of the event models or raises `EventRejected`
with a short, bounded `reason`; `export_json_schemas` publishes the contract as JSON Schema. The `Signal` models describe what
the pipeline itself writes to `cx.signals`.
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
from schemas.signals import (
    SIGNAL_ADAPTER,
    SIGNAL_MODELS,
    SIGNAL_TYPES,
    CartAbandoned,
    CartRecovered,
    OrderDeliveryLate,
    Signal,
    SignalEnvelope,
    SurveyDetractor,
    TicketSlaBreached,
    signal_id,
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
