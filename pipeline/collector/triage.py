"""Sort a request's items into accepted records, rejections and ignored messages.

Every item is judged by ``schemas.decode_record``, the worker's own decoder, so an event the
collector accepts is one the worker accepts, and a rejection carries the same reason code.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.collector.segment import Ignored, map_message
from pipeline.settings import Settings
from schemas import KEY_FIELD, TOPIC_OF_EVENT_TYPE, EventRejected, decode_record

_ANY_TOPIC = "carts"  # for items without a known event_type: the decoder rejects them first


@dataclass(frozen=True, slots=True)
class Record:
    """One accepted event, ready for Kafka: topic short name, entity-id key, JSON value."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused item: its place in the request and the bytes the dead-letter topic keeps."""

    index: int
    value: bytes
    reason: str
    detail: str


@dataclass(slots=True)
class Triage:
    accepted: list[Record] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)

    def response(self) -> dict[str, Any]:
        """The contract's response body fields."""
        return {
            "accepted": len(self.accepted),
            "rejected": [
                {"index": r.index, "reason": r.reason, "detail": r.detail} for r in self.rejected
            ],
            "ignored": sum(self.ignored.values()),
        }


_DEEPEST_PARSED = 1024
"""orjson parses up to this nesting depth, but writes at most 254 levels."""


def _as_bytes(item: Any) -> bytes:
    """The item as Kafka keeps it: an NDJSON line that did not parse stays raw; anything else
    is re-serialised compactly. An item nested past orjson's writing limit is written by the
    standard library (with room on its recursion stack), so it can be dead-lettered as too deep
    instead of failing the whole request."""
    if isinstance(item, bytes):
        return item
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 4 * _DEEPEST_PARSED))
        try:
            return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
        finally:
            sys.setrecursionlimit(limit)


class Judge:
    """Applies the worker's limits (record size, depth, future skew) to incoming items."""

    def __init__(self, settings: Settings, default_currency: str) -> None:
        self.max_bytes = settings.max_record_bytes
        self.max_depth = settings.max_json_depth
        self.max_future_skew = settings.max_future_skew
        self.default_currency = default_currency

    def record(self, item: Any, now: float) -> Record:
        """A contract event (dict or raw bytes) -> its Kafka record, or ``EventRejected``."""
        value = _as_bytes(item)
        event_type = item.get("event_type") if isinstance(item, dict) else None
        topic = (
            TOPIC_OF_EVENT_TYPE.get(event_type, _ANY_TOPIC)
            if isinstance(event_type, str)
            else _ANY_TOPIC
        )
        key = item.get(KEY_FIELD[topic]) if isinstance(item, dict) else None
        event = decode_record(
            topic,
            key.encode("utf-8", "surrogatepass") if isinstance(key, str) else None,
            value,
            now=now,
            max_bytes=self.max_bytes,
            max_depth=self.max_depth,
            max_future_skew=self.max_future_skew,
        )
        return Record(topic, getattr(event, KEY_FIELD[topic]).encode(), value)

    def events(self, items: list[Any], now: float) -> Triage:
        """``/v1/events`` items: each is a contract event."""
        triage = Triage()
        for index, item in enumerate(items):
            try:
                triage.accepted.append(self.record(item, now))
            except EventRejected as rejected:
                triage.rejected.append(
                    Rejection(index, _as_bytes(item), rejected.reason, rejected.detail)
                )
        return triage

    def segment(self, messages: list[Any], now: float, default_type: str | None) -> Triage:
        """Segment messages: mapped, ignored, or rejected (dead letters keep the message)."""
        triage = Triage()
        for index, message in enumerate(messages):
            try:
                mapped = map_message(message, self.default_currency, default_type)
                if isinstance(mapped, Ignored):
                    triage.ignored[mapped.reason] += 1
                    continue
                triage.accepted.append(self.record(mapped, now))
            except EventRejected as rejected:
                triage.rejected.append(
                    Rejection(index, _as_bytes(message), rejected.reason, rejected.detail)
                )
        return triage
