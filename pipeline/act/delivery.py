"""One signal to one webhook: a signed JSON POST, retried with backoff, or a failure reason.

Retried: 5xx, 408, 429, timeouts and connection errors (the receiver may recover). Not retried:
other 4xx and 3xx (the request itself is wrong; sending it again cannot help). The caller
dead-letters a failure.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from pipeline.act.config import DeliveryPolicy, Webhook
from pipeline.act.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign

RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended: `reason` is None when delivered, else a short code plus detail."""

    attempts: int
    reason: str | None = None
    detail: str = ""

    @property
    def delivered(self) -> bool:
        return self.reason is None


def backoff_delay(
    retry: int, policy: DeliveryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry number `retry` (0-based): exponential, capped, "equal jitter".

    Half the ceiling is fixed, so retries never bunch at zero; the other half is random, so
    many signals failing together do not retry in lockstep.
    """
    ceiling = min(policy.backoff_max, policy.backoff * 2**retry)
    return ceiling / 2 + rand() * ceiling / 2


async def deliver(
    session: aiohttp.ClientSession,
    hook: Webhook,
    body: bytes,
    signal_id: str,
    policy: DeliveryPolicy,
    *,
    on_retry: Callable[[str], None] = lambda reason: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Outcome:
    """POST `body` until a 2xx, a permanent failure, or the end of the retry budget."""
    reason, detail = "", ""
    for attempt in range(policy.attempts):
        if attempt:
            on_retry(reason)
            await sleep(backoff_delay(attempt - 1, policy))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body),
            IDEMPOTENCY_HEADER: signal_id,
        }
        try:
            async with session.post(
                hook.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=policy.timeout),
                allow_redirects=False,
            ) as response:
                status = response.status
        except TimeoutError:
            reason, detail = "timeout", f"no answer within {policy.timeout:g}s"
            continue
        except aiohttp.ClientError as exc:
            reason, detail = "connection", type(exc).__name__
            continue
        if 200 <= status < 300:
            return Outcome(attempts=attempt + 1)
        reason, detail = f"http_{status // 100}xx", f"HTTP {status}"
        if status < 500 and status not in RETRYABLE_4XX:
            return Outcome(attempts=attempt + 1, reason=reason, detail=detail)
    return Outcome(attempts=policy.attempts, reason=reason, detail=detail + " (retries exhausted)")
