"""The worker process: the consumer-group ingest loop, delivery of each flush, recovery on
rebalance, the orders-settled barrier for cart decisions, and the view loop with snapshots.

May import everything below it: ``pipeline.http``, ``pipeline.kafka``, ``pipeline.engine``, …
"""

from pipeline.worker.handlers import make_handler
from pipeline.worker.service import Worker

__all__ = ["Worker", "make_handler"]
