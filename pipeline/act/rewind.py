"""Faust fix: after a rebalance, partitions the group never committed are read from the start.

Faust drops records it fetched at the wrong moment (while a partition is paused for table
recovery, while flow is stopped, when the generation changes) and relies on "seek to committed"
to fetch them again. aiokafka's ``seek_to_committed`` does not move a partition with no committed
offset (or offset 0), so those records were lost: a restarted ``cxpipe act`` whose predecessor
died before its first commit skipped the signals fetched during recovery, and sat idle until the
next restart (seen as a flaky SIGKILL test; faust-streaming issues #216 and #221 are the same
race with committed offsets). ``auto_offset_reset`` is ``earliest`` for act, so the log start is
where such a partition begins anyway; a record read twice is a duplicate the done table drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

__all__ = ["install", "rewind_uncommitted"]

CHANGELOG_SUFFIX = "-changelog"
"""Faust's table changelogs: their reads are positioned by table recovery, never committed."""


async def rewind_uncommitted(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int | None]:
    """``consumer.seek_to_committed()``, plus a seek to the log start for every assigned stream
    partition without a committed offset past 0. Returns the committed offsets, as it does."""
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed()
    fresh = [
        tp
        for tp, offset in committed.items()
        if not offset and not tp.topic.endswith(CHANGELOG_SUFFIX)
    ]
    if fresh:
        await consumer.seek_to_beginning(*fresh)
    return committed


async def _seek_to_committed(self: Any) -> Mapping[Any, int]:
    return await self.call_thread(rewind_uncommitted, self._ensure_consumer())  # type: ignore[no-any-return]


def install() -> None:
    """Route Faust's seek-to-committed through :func:`rewind_uncommitted` (idempotent)."""
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
