"""Signals (CONTRACT.md "Signals"), built as plain JSON-ready dicts where a handler decides a fact.

Plain dicts rather than ``schemas.signals`` models: this runs on the hot path, in the same step
as the observation it goes with. The unit tests validate every emitted dict against
``schemas.signals.SIGNAL_ADAPTER`` instead. Times are written in UTC (``+00:00``), so the same
fact always serialises to the same text, whatever offset its source event used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.aggregates.observations import Observations
from schemas.signals import KEY_FIELD_OF_SIGNAL, signal_id


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 with an offset (UTC)."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def emit_signal(
    out: Observations,
    signal_type: str,
    entity_id: str,
    *,
    occurred_at: float,
    channel: str,
    customer_id: str | None,
    fact: tuple[str, ...] = (),
    **fields: Any,
) -> None:
    """Hand one fact to ``out``, keyed by its entity, with its stable ``signal_id``.

    ``fact`` tells two facts of one entity apart (see ``schemas.signals.signal_id``).
    """
    signal: dict[str, Any] = {
        "signal_id": signal_id(signal_type, entity_id, *fact),
        "signal_type": signal_type,
        "occurred_at": rfc3339(occurred_at),
        "channel": channel,
        "schema_version": 1,
        KEY_FIELD_OF_SIGNAL[signal_type]: entity_id,
        **fields,
    }
    if customer_id is not None:
        signal["customer_id"] = customer_id
    out.signal(entity_id, signal)


def earliest_customer(known: list[Any] | None, time: float, customer_id: str) -> list[Any]:
    """The ``[time, customer_id]`` of an entity's earliest event that names a customer.

    Earliest by event time (ties: the smaller id), so arrival order never decides it.
    """
    if known is None or (time, customer_id) < (known[0], known[1]):
        return [time, customer_id]
    return known
