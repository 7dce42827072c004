"""The demo's HTTP intake: the collector's settings, a share of the shop sent through it, and
a ready-to-paste ``curl`` so a newcomer can post an event of their own.

The share is chosen per entity (a stable hash of the record key), so all events of one cart,
order, ticket or survey take the same path and keep their order; every event takes exactly one
path, so the counts stay exact: Kafka's records = the simulator's events.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import time
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.collector import CollectorSettings
from pipeline.tools.simulate import HttpSink, SimEvent, produce
from pipeline.tools.simulate.core import timestamp

DEMO_HTTP_SHARE = 0.25
"""Entities whose events the demo's simulator posts through the collector instead of Kafka."""


def demo_collector_settings(**overrides: Any) -> CollectorSettings:
    """``CX_COLLECTOR_*`` from the environment, with a fresh random token unless tokens are
    configured (the demo always runs its collector; ``cxpipe collect`` refuses no token)."""
    configured = os.environ.get("CX_COLLECTOR_TOKENS", "").strip(", ")
    overrides.setdefault("tokens", configured or secrets.token_urlsafe(16))
    return CollectorSettings(**overrides)


def goes_via_http(key: str, share: float) -> bool:
    """Whether the entity ``key`` is one of the ``share`` sent through the collector."""
    return zlib.crc32(key.encode()) < share * 2**32


class SplitSink:
    """An :class:`~pipeline.tools.simulate.EventSink`: the ``share`` of entities through the
    collector (``http``), the rest straight to Kafka, both halves of a batch concurrently."""

    def __init__(self, producer: Any, http: HttpSink, share: float, topic_prefix: str) -> None:
        if not 0 <= share <= 1:
            raise ValueError(f"the HTTP share must be within 0..1, got {share!r}")
        self.producer, self.http, self.share, self.topic_prefix = (
            producer,
            http,
            share,
            topic_prefix,
        )
        self.via_http = 0

    async def send_events(self, events: Sequence[SimEvent]) -> int:
        http, kafka = [], []
        for event in events:
            (http if goes_via_http(event.key, self.share) else kafka).append(event)
        direct, posted = await asyncio.gather(
            produce(kafka, self.producer, self.topic_prefix), self.http.send_events(http)
        )
        self.via_http += posted
        return direct + posted


def curl_example(url: str, token: str, now: float | None = None) -> str:
    """A shell command posting one NPS detractor response (it shows under Signals too).

    Multi-line so a terminal never wraps it mid-word: the JSON's newlines sit inside the
    single-quoted body, where the shell keeps them and JSON ignores them.
    """
    suffix = secrets.token_hex(4)
    event = {
        "event_id": f"curl-{suffix}",
        "event_type": "survey.submitted",
        "occurred_at": timestamp(int((time.time() if now is None else now) * 1000)),
        "schema_version": 1,
        "source": "curl",
        "channel": "web",
        "response_id": f"resp-curl-{suffix}",
        "survey": "nps",
        "score": 3,
    }
    fields = [f'"{key}":{orjson.dumps(value).decode()}' for key, value in event.items()]
    body = "[{" + ",\n  ".join(fields) + "}]"
    return (
        f"curl -sS {url}/v1/events \\\n"
        f"  -H {shlex.quote(f'Authorization: Bearer {token}')} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )
