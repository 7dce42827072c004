"""Events of topic `cx.tickets`, keyed by `ticket_id`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from schemas.envelope import Envelope
from schemas.fields import EntityId, LaxEnum, ShortText

TOPIC = "tickets"
KEY = "ticket_id"

TicketId = Annotated[EntityId, Field(description="Ticket id; the record key of cx.tickets.")]


class Priority(StrEnum):
    """Support ticket priority."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PriorityField = Annotated[Priority, LaxEnum]


class TicketOpened(Envelope):
    """A support ticket was opened: starts TTR and first-response clocks, joins the backlog."""

    event_type: Literal["ticket.opened"]
    ticket_id: TicketId
    priority: Annotated[PriorityField, Field(description="low, normal, high or urgent.")]
    category: Annotated[ShortText | None, Field(description="Free-form category.")] = None


class TicketAgentReplied(Envelope):
    """An agent answered; the first reply ends the first-response clock."""

    event_type: Literal["ticket.agent_replied"]
    ticket_id: TicketId


class TicketResolved(Envelope):
    """The ticket was resolved; the first resolution is the TTR observation."""

    event_type: Literal["ticket.resolved"]
    ticket_id: TicketId


class TicketReopened(Envelope):
    """A resolved ticket was reopened: back in the backlog, counted as a reopen."""

    event_type: Literal["ticket.reopened"]
    ticket_id: TicketId


MODELS = (TicketOpened, TicketAgentReplied, TicketResolved, TicketReopened)
