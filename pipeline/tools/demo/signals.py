"""Pure: the signals of ``cx.signals`` tallied by type, each type's last few, and a short
description of a signal with its age for the view (CONTRACT.md "Signals").

A signal may be produced again after a crash with the same ``signal_id`` (same fact): the tally
counts facts, so a repeat of a seen id changes nothing. The ids seen are kept for the demo's
lifetime (a few hundred kB per hour at the demo's rate).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

DEMO_SIGNAL_TYPES = (
    "cart.abandoned",
    "cart.recovered",
    "survey.detractor",
    "order.delivery_late",
    "ticket.sla_breached",
)
"""The signals the demo's shop causes, in the order the view lists them (others follow)."""
RECENT = 3
"""Signals kept per type for the view: the last ones read, newest first."""


class SignalTally:
    """Counts per ``signal_type`` of distinct ``signal_id``, and the last :data:`RECENT` signals
    read of each type, newest first."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.recent: dict[str, deque[Mapping[str, Any]]] = {}
        self.unreadable = 0
        self._seen: set[str] = set()

    def add(self, raw: bytes | None) -> None:
        """One record's value; what is not a signal object is counted as unreadable."""
        try:
            signal = orjson.loads(raw or b"")
        except orjson.JSONDecodeError:
            signal = None
        if not isinstance(signal, dict) or not isinstance(signal.get("signal_type"), str):
            self.unreadable += 1
            return
        signal_id = str(signal.get("signal_id", ""))
        if signal_id in self._seen:
            return
        self._seen.add(signal_id)
        kind = signal["signal_type"]
        self.counts[kind] += 1
        self.recent.setdefault(kind, deque(maxlen=RECENT)).appendleft(signal)

    def types(self) -> list[str]:
        """The demo's types, then any other type seen, sorted."""
        return [*DEMO_SIGNAL_TYPES, *sorted(set(self.counts) - set(DEMO_SIGNAL_TYPES))]


def age(signal: Mapping[str, Any], now: float) -> str | None:
    """How long ago the signal's fact happened (its ``occurred_at``), compact: 8s, 12m, 3h."""
    try:
        seconds = max(0.0, now - datetime.fromisoformat(str(signal["occurred_at"])).timestamp())
    except (KeyError, ValueError):
        return None
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def describe(signal: Mapping[str, Any], now: float | None = None) -> str:
    """What the signal is about, in a few words: the entity and the fields one acts on, after
    its age at ``now`` (else the time of day it happened)."""
    kind = signal.get("signal_type")
    ago = age(signal, now) if now is not None else None
    at = f"{ago} ago" if ago else str(signal.get("occurred_at", ""))[11:19]  # HH:MM:SS (UTC)
    if kind == "cart.abandoned":
        items = signal.get("items") or []
        what = (
            f"{signal.get('cart_id')} {len(items)} items {signal.get('value')} "
            f"{signal.get('currency')}, after {signal.get('last_step')}"
        )
    elif kind == "cart.recovered":
        what = f"{signal.get('cart_id')} by {signal.get('order_id')}"
    elif kind == "survey.detractor":
        touchpoint = signal.get("touchpoint")
        what = f"{signal.get('survey')} {signal.get('score')}" + (
            f" on {touchpoint}" if touchpoint else ""
        )
    elif kind == "order.delivery_late":
        what = f"{signal.get('order_id')} promised {str(signal.get('promised_delivery_at'))[11:19]}"
    elif kind == "ticket.sla_breached":
        what = f"{signal.get('ticket_id')} {signal.get('kind')} ({signal.get('priority')})"
    else:
        what = str(signal.get("signal_id", ""))
    return f"{at} {what}".strip()
