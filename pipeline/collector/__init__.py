"""HTTP intake (``cxpipe collect``): events over HTTP, produced to Kafka as a shop service would.

See CONTRACT.md, "HTTP intake". The pieces: ``config`` (settings), ``auth``, ``limits`` (rate
limit), ``intake`` (bodies), ``segment`` (Segment mapping), ``triage`` (validation),
``producer`` (Kafka), ``app`` (routes), ``server`` (run and stop).
"""

from pipeline.collector.config import CollectorSettings
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.server import main, run_collector

__all__ = ["CollectorMetrics", "CollectorSettings", "main", "run_collector"]
