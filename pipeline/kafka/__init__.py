"""Kafka plumbing: topic names, partitioning and creation, client helpers (read a log to its end,
bounded shutdown), and the embedded Tansu broker for demo, development and tests.

May import: ``pipeline.engine`` and below, ``pipeline.settings``, ``schemas``; never the worker.
"""

from pipeline.kafka.broker import BrokerError, EmbeddedBroker, broker_binary, wait_until_ready
from pipeline.kafka.clients import FETCH_MAX_WAIT_MS, bounded_shutdown, read_partitions
from pipeline.kafka.topics import SOURCE_TOPICS, ensure_topics

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "SOURCE_TOPICS",
    "BrokerError",
    "EmbeddedBroker",
    "bounded_shutdown",
    "broker_binary",
    "ensure_topics",
    "read_partitions",
    "wait_until_ready",
]
