"""HTTP servers: /metrics (the whole-shop view plus this process's health), /healthz, /readyz.

May import: ``pipeline.kafka`` and below; never the worker.
"""

from pipeline.http.exposition import HealthMetrics, MetricsServer
from pipeline.http.view_metrics import ViewCollector

__all__ = ["HealthMetrics", "MetricsServer", "ViewCollector"]
