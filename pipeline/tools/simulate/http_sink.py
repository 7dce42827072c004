"""Simulated traffic through the HTTP collector (``cxpipe simulate --via http URL``).

The events take the path a storefront's would: batches POSTed to the collector's ``/v1/events``
with a Bearer token, so the collector, Kafka and the workers all run. The collector answers 200
only after Kafka acknowledged the batch, and 503 / 429 (with ``Retry-After``) when it cannot take
it now; the same batch is then sent again, which can only create duplicates that the pipeline
drops by ``event_id``. Any other refusal (401, 400, 413) can never succeed and stops the run.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from pipeline.tools.simulate.core import SimEvent

EVENTS_PATH = "/v1/events"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""What the collector (or a proxy in front of it) answers when it cannot take a batch *now*."""


class CollectorRefused(RuntimeError):
    """The collector refused a batch for good (bad token, too large, ...) or never took it."""


def events_url(url: str) -> str:
    """``http://host:8088`` or ``.../v1/events`` -> the ``/v1/events`` endpoint."""
    url = url.rstrip("/")
    return url if url.endswith(EVENTS_PATH) else url + EVENTS_PATH


class HttpSink:
    """Posts simulated events to the collector in batches; use as ``async with HttpSink(...)``.

    ``accepted`` / ``rejected`` count what the collector answered (rejections by reason code: a
    rejected event was dead-lettered by the collector, not lost).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        batch: int = 500,
        attempts: int = 8,
        timeout: float = 30.0,
        max_wait: float = 30.0,
    ) -> None:
        if batch < 1 or attempts < 1:
            raise ValueError("batch and attempts must be at least 1")
        self.url = events_url(url)
        self.batch = batch
        self.attempts = attempts
        self.max_wait = max_wait
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpSink:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_events(self, events: Sequence[SimEvent]) -> int:
        """POST ``events`` in batches; returns how many the collector answered for (acked)."""
        done = 0
        for start in range(0, len(events), self.batch):
            chunk = events[start : start + self.batch]
            answer = await self._post(orjson.dumps([event.value for event in chunk]))
            self.accepted += int(answer.get("accepted", 0))
            self.rejected.update(item.get("reason", "?") for item in answer.get("rejected", []))
            done += len(chunk)
        return done

    async def _post(self, body: bytes) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("use HttpSink as `async with HttpSink(...) as sink`")
        problem = ""
        for attempt in range(self.attempts):
            try:
                async with self._session.post(self.url, data=body) as response:
                    text = await response.text()
                    if response.status == 200:
                        return orjson.loads(text)
                    problem = f"HTTP {response.status}: {text[:300]}"
                    if response.status not in RETRY_STATUSES:
                        raise CollectorRefused(f"{self.url} refused the batch: {problem}")
                    wait = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as error:
                problem = f"{type(error).__name__}: {error}"
                wait = None
            if attempt + 1 < self.attempts:
                backoff = min(self.max_wait, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
                await asyncio.sleep(min(self.max_wait, wait if wait is not None else backoff))
        raise CollectorRefused(
            f"{self.url} did not take a batch in {self.attempts} attempts: {problem}"
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After: <seconds>`` header (the collector never sends a date)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
