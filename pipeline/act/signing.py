"""Webhook signatures, Stripe-style: `X-CX-Signature: t=<unix>,v1=<hex>`.

`v1` = HMAC-SHA256(secret, f"{t}.{body}"). Signing the timestamp with the body lets a receiver
reject replays: it recomputes the HMAC over the raw body it received, compares in constant time,
and refuses a `t` further than its tolerance (default 5 min) from its own clock. Retries are
signed afresh, so a slow retry is not mistaken for a replay; a receiver that must also drop
legitimate repeats keeps the `Idempotency-Key` (= `signal_id`) it has processed.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-CX-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300.0


class SignatureError(ValueError):
    """The request is not signed by the shared secret, or the signature is too old."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-CX-Signature` header value for `body`."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return f"t={stamp},v1={_digest(secret, stamp, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """Check a received signature; returns its timestamp or raises `SignatureError`."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        (stamp_text,) = parts["t"]
        stamp = int(stamp_text)
    except (KeyError, ValueError):
        raise SignatureError("signature has no single integer t=") from None
    clock = time.time() if now is None else now
    if abs(clock - stamp) > tolerance:
        raise SignatureError(f"signature timestamp is {clock - stamp:.0f}s off (replay?)")
    expected = _digest(secret, stamp, body)
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise SignatureError("signature does not match the body")
    return stamp
