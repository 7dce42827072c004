"""Coalesce the records of concurrent requests into one produce batch per partition.

aiokafka's ``send_batch`` lets one batch per partition wait in its queue; a second caller waits
for the first to drain, and its timeout shrinks by the total time waited on every loop, so many
concurrent requests each sending their own small batches time out while the broker is healthy
(measured: KafkaTimeoutError under 8 concurrent clients). Here each partition has one sender at a
time, which takes everything queued so far (from any number of requests) into one batch, and a
request is settled once every batch holding one of its records is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

Header = tuple[str, bytes]
Partition = tuple[str, int]
PendingRecord = tuple[bytes | None, bytes, list[Header]]


class _Ticket:
    """One request's share of the batches: done when all its records are acked, or one failed."""

    __slots__ = ("done", "remaining")

    def __init__(self, count: int) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.remaining = count
        if count == 0:
            self.done.set_result(None)

    def settle(self, count: int, error: BaseException | None) -> None:
        if self.done.done():
            return
        if error is not None:
            self.done.set_exception(error)
            return
        self.remaining -= count
        if self.remaining <= 0:
            self.done.set_result(None)


class PartitionBatcher:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._queues: dict[Partition, deque[tuple[PendingRecord, _Ticket]]] = defaultdict(deque)
        self._senders: dict[Partition, asyncio.Task[None]] = {}

    def submit(self, groups: Mapping[Partition, Sequence[PendingRecord]]) -> asyncio.Future[None]:
        """Queue records per partition; the future resolves once Kafka acked all of them."""
        ticket = _Ticket(sum(len(records) for records in groups.values()))
        for partition, records in groups.items():
            self._queues[partition].extend((record, ticket) for record in records)
            if partition not in self._senders:
                self._senders[partition] = asyncio.create_task(self._drain(partition))
        return ticket.done

    async def _drain(self, partition: Partition) -> None:
        """Send batches for ``partition`` until its queue is empty; one batch in flight."""
        queue = self._queues[partition]
        try:
            while queue:
                batch = self._producer.create_batch()
                shares: Counter[_Ticket] = Counter()
                while queue:
                    (key, value, headers), ticket = queue[0]
                    appended = batch.append(key=key, value=value, timestamp=None, headers=headers)
                    if appended is None:
                        if not shares:  # cannot fit even alone: fail it rather than loop
                            queue.popleft()
                            ticket.settle(1, ValueError(f"record of {len(value)} bytes too big"))
                            continue
                        break
                    queue.popleft()
                    shares[ticket] += 1
                if not shares:
                    continue
                error: BaseException | None = None
                try:
                    topic, number = partition
                    sent = await self._producer.send_batch(batch, topic, partition=number)
                    await sent
                except Exception as failure:  # every failure reaches the requests, none is lost
                    error = failure
                for ticket, count in shares.items():
                    ticket.settle(count, error)
        finally:
            del self._senders[partition]
