"""The contract a topic's domain logic fulfils; stage 1 calls it, it never touches Kafka.

Handlers keep per-entity state (tickets, carts, orders) for ONE source partition. Every state
change is reported through :meth:`take_changes` so it can ride in the same checkpoint record as
the observations it produced: state and metrics are persisted atomically.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.aggregates.observations import Observations


class DomainHandler(Protocol):
    def handle(self, event: Any, out: Observations) -> None:
        """Apply one valid, first-seen, on-time event."""

    def handle_late(self, event: Any, out: Observations) -> None:
        """An event older than the longest window on arrival: no observation, no entity state,
        only the signals it decides on its own (CONTRACT.md "Signals": backfills included)."""

    def tick(self, now: float, out: Observations) -> None:
        """Fire timers (e.g. cart abandonment) due at ``now``."""

    def take_changes(self, full: bool = False) -> dict[str, Any]:
        """Entity upserts/deletes since the last call, JSON-safe; empty if none.

        ``full`` also includes every live entity, so the result alone rebuilds the handler.
        """

    def restore(self, changes: dict[str, Any]) -> None:
        """Re-apply changes taken from a checkpoint, in checkpoint order."""


class NoLateSignals:
    """For handlers whose signals follow from an entity's history (a cart's activity, a
    ticket's replies, an order's shipment): a late event is not part of any kept history."""

    def handle_late(self, event: Any, out: Observations) -> None:
        return None


class Stateless:
    """Base for handlers without entity state."""

    def tick(self, now: float, out: Observations) -> None:
        return None

    def take_changes(self, full: bool = False) -> dict[str, Any]:
        return {}

    def restore(self, changes: dict[str, Any]) -> None:
        return None
