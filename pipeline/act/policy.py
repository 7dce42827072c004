"""Whether one signal goes to one webhook now: duplicate, filtered, stale, capped or deliver.

Pure, so the rules are tested without Kafka; the Faust agent feeds it the table entries.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pipeline.act.config import Webhook
from schemas.signals import SignalEnvelope


class Decision(StrEnum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    CHANNEL = "channel"
    STALE = "stale"
    CAPPED = "capped"


def decide(
    signal: SignalEnvelope,
    hook: Webhook,
    *,
    now: float,
    frequency_cap: float | None,
    dedupe_horizon: float,
    done: dict[str, Any] | None,
    cap: dict[str, Any] | None,
) -> Decision:
    """`done` is the webhook's record of this signal_id, `cap` its claim for this customer.

    A cap claimed by this very signal does not cap it: that is a restart after the claim was
    recorded and before the delivery was, and the signal must still go out.
    """
    if done is not None and now - done["at"] < dedupe_horizon:
        return Decision.DUPLICATE
    if not hook.accepts_channel(signal.channel):
        return Decision.CHANNEL
    if now - signal.ts > hook.max_age:
        return Decision.STALE
    if (
        frequency_cap is not None
        and cap is not None
        and cap["signal_id"] != signal.signal_id
        and now - cap["at"] < frequency_cap
    ):
        return Decision.CAPPED
    return Decision.DELIVER


def cap_key(signal: SignalEnvelope) -> str | None:
    """Caps are per customer; a signal without a customer is never capped."""
    return signal.customer_id
