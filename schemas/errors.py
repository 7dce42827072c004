"""The reject vocabulary shared by the decoder, the dead-letter writer and the metrics.

`reason` becomes the `cx.error.reason` header and the `reason` label of
`cx_events_rejected_total`, so it must come from a small fixed set; `detail` goes to logs, so it
names fields and rules but never echoes payload values (customer data must not reach logs).
"""

from __future__ import annotations

REJECT_REASONS: frozenset[str] = frozenset(
    {
        "too_large",
        "invalid_encoding",
        "invalid_json",
        "too_deep",
        "not_an_object",
        "unknown_event_type",
        "wrong_topic",
        "unsupported_schema_version",
        "missing_field",
        "invalid_field",
        "invalid_timestamp",
        "future_timestamp",
        "missing_key",
        "key_mismatch",
    }
)


class EventRejected(Exception):
    """A record that breaks the contract; it goes to the dead-letter topic, never crashes a worker."""

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REJECT_REASONS:
            # A programming error: an unbounded reason would blow up metric cardinality.
            raise ValueError(f"unknown reject reason {reason!r}")
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
