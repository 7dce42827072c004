"""The exactly-once machinery: per-partition processing (decode, validate, dedupe, domain logic),
the checkpoint record and its sequence ledger, the event-id store, and the whole-shop view that
folds every checkpoint once.

Synchronous and free of I/O (no aiokafka): the worker feeds it records and ships what it returns.
May import: ``pipeline.domain``, ``pipeline.aggregates``, ``pipeline.settings``, ``schemas``.
"""

from pipeline.engine.checkpoint import Checkpoint, SequenceLedger
from pipeline.engine.dedupe import IdStore
from pipeline.engine.links import decode_link, encode_link
from pipeline.engine.partition import PartitionProcessor, Rejection
from pipeline.engine.view import View

__all__ = [
    "Checkpoint",
    "IdStore",
    "PartitionProcessor",
    "Rejection",
    "SequenceLedger",
    "View",
    "decode_link",
    "encode_link",
]
