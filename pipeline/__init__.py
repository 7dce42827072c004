"""cx-pipeline: exact, live customer-experience metrics from shop events on Kafka."""

__version__ = "0.1.0"
