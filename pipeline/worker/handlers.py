"""Which domain logic runs behind each source topic, configured from the settings."""

from __future__ import annotations

from pipeline.domain.carts import CartHandler
from pipeline.domain.handler import DomainHandler
from pipeline.domain.orders import OrderHandler
from pipeline.domain.sla_policy import SlaPolicy, load_policy
from pipeline.domain.surveys import SurveyHandler
from pipeline.domain.tickets import TicketHandler
from pipeline.settings import Settings

_policies: dict[str | None, SlaPolicy] = {}


def sla_policy(settings: Settings) -> SlaPolicy:
    """The configured SLA policy, read once per file (every tickets partition shares it).

    Raises ``PolicyError`` naming the file and line: call it at start so a bad policy stops the
    worker before it joins the group, not at its first partition assignment.
    """
    path = settings.sla_policy
    if path not in _policies:
        _policies[path] = load_policy(path)
    return _policies[path]


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
        return TicketHandler(
            retention=settings.entity_retention,
            policy=sla_policy(settings),
            lateness=settings.allowed_lateness,
            quiet=settings.quiet_period,
        )
    raise ValueError(f"no domain logic for topic {topic!r}")
