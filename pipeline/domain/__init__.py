"""The CX rules, one module per source topic (surveys, tickets, carts, orders), each with its
metric definitions next to its rules, and the catalogue of every metric family.

Pure: handlers turn valid events into observations and keep per-entity state for one partition;
they never touch Kafka. May import: ``pipeline.aggregates``, ``pipeline.settings``, ``schemas``.
"""

from pipeline.domain.carts import CartHandler
from pipeline.domain.catalog import METRIC_SOURCES
from pipeline.domain.handler import DomainHandler, Stateless
from pipeline.domain.orders import OrderHandler
from pipeline.domain.reading import MetricView
from pipeline.domain.surveys import SurveyHandler
from pipeline.domain.tickets import TicketHandler

__all__ = [
    "METRIC_SOURCES",
    "CartHandler",
    "DomainHandler",
    "MetricView",
    "OrderHandler",
    "Stateless",
    "SurveyHandler",
    "TicketHandler",
]
