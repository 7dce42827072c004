"""Per-token request rate limit: a token bucket per credential, with an injectable clock.

A bucket holds up to ``burst`` requests and refills at ``rate`` per second. A refused request
learns how long until one request fits, which becomes the 429's ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}

    def acquire(self, key: Hashable) -> float:
        """Take one request from ``key``'s bucket: 0.0 if allowed, else seconds to wait."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0 - 1e-9:  # a client that waited exactly as told must fit
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after_header(wait_seconds: float) -> str:
    """Whole seconds, rounded up and at least 1 (HTTP's ``Retry-After`` has no fractions)."""
    return str(max(1, math.ceil(wait_seconds)))
