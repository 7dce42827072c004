"""Which domain logic runs behind each source topic, configured from the settings."""

from __future__ import annotations

from pipeline.domain.carts import CartHandler
from pipeline.domain.handler import DomainHandler
from pipeline.domain.orders import OrderHandler
from pipeline.domain.surveys import SurveyHandler
from pipeline.domain.tickets import TicketHandler
from pipeline.settings import Settings


def make_handler(topic: str, settings: Settings) -> DomainHandler:
    """The domain logic of one source topic, for one partition."""
    if topic == "surveys":
        return SurveyHandler()
    if topic == "carts":
        return CartHandler(
            timeout=settings.abandonment_timeout,
            lateness=settings.allowed_lateness,
            quiet=settings.quiet_period,
        )
    if topic == "orders":
        retention = settings.entity_retention
        return OrderHandler(
            retention=retention,
            undelivered_retention=retention,
            lateness=settings.allowed_lateness,
            quiet=settings.quiet_period,
        )
    if topic == "tickets":
        return TicketHandler(retention=settings.entity_retention)
    raise ValueError(f"no domain logic for topic {topic!r}")
