"""The collector's Prometheus metrics, on a registry the caller owns (tests use a fresh one).

Labels are bounded: routes are the fixed paths, reasons come from fixed vocabularies, and no
token, client address or payload value ever becomes a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "cx_collector_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=reg,
        )
        self.refused = Counter(
            "cx_collector_refused_requests",
            "Requests refused as a whole (nothing produced), by reason.",
            ["reason"],
            registry=reg,
        )
        self.accepted = Counter(
            "cx_collector_events_accepted",
            "Events acknowledged by Kafka, by topic (short name).",
            ["topic"],
            registry=reg,
        )
        self.rejected = Counter(
            "cx_collector_events_rejected",
            "Events rejected and dead-lettered, by reason code.",
            ["reason"],
            registry=reg,
        )
        self.ignored = Counter(
            "cx_collector_events_ignored",
            "Segment messages accepted but not counted (other types, unmapped events), by reason.",
            ["reason"],
            registry=reg,
        )
        self.produce_seconds = Histogram(
            "cx_collector_produce_seconds",
            "Time from handing a request's records to Kafka until every ack arrived.",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.pending_events = Gauge(
            "cx_collector_pending_events",
            "Events handed to Kafka and not yet acknowledged.",
            registry=reg,
        )
        self.broker_up = Gauge(
            "cx_collector_broker_up",
            "1 while the broker answered the last probe, else 0.",
            registry=reg,
        )
