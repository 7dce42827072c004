"""What `cxpipe act` did, per signal type and webhook, on its own Prometheus registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
"""Seconds from the fact's `occurred_at`: a cart signal is decided 32 min after last activity's
timeout starts, so the latency that matters spans seconds (surveys) to an hour (backfills)."""


@dataclass
class ActMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        labels = ["signal_type", "webhook"]
        self.delivered = Counter(
            "cx_act_delivered", "Signals delivered (2xx).", labels, registry=self.registry
        )
        self.retried = Counter(
            "cx_act_retried", "Delivery retries.", [*labels, "reason"], registry=self.registry
        )
        self.failed = Counter(
            "cx_act_failed",
            "Signals dead-lettered after a permanent error or the retry budget.",
            [*labels, "reason"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "cx_act_skipped",
            "Signals not delivered: capped, stale, channel filtered or duplicate.",
            [*labels, "decision"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "cx_act_rejected",
            "Records on cx.signals that are not valid signals (dead-lettered).",
            registry=self.registry,
        )
        self.latency = Histogram(
            "cx_act_delivery_latency_seconds",
            "From the signal's occurred_at to its delivery.",
            ["signal_type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics from a thread (counters and histograms are thread-safe)."""
        start_http_server(port, addr=host, registry=self.registry)
