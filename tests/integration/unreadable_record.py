"""Produce one record whose header key is not UTF-8: ``python -m tests.integration.unreadable_record
BOOTSTRAP TOPIC KEY``. Run it with ``AIOKAFKA_NO_EXTENSIONS=1``: aiokafka's pure-Python record
builder asks the key for its bytes (``str.encode``), which lets a ``str`` subclass hand it raw
ones; the C builder would refuse. Kafka itself accepts such a record, and any client that reads
it fails to decode the batch: the poison pill the worker must step over."""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka import AIOKafkaProducer

RAW_HEADER_KEY = b"\xff\xfe-not-utf-8"


class _RawKey(str):
    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return RAW_HEADER_KEY


async def produce(bootstrap: str, topic: str, key: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, b'{"event_id": "x"}', key=key.encode(), headers=[(_RawKey("k"), b"v")]
        )
    finally:
        await producer.stop()


if __name__ == "__main__":
    if os.environ.get("AIOKAFKA_NO_EXTENSIONS") != "1":
        sys.exit("run with AIOKAFKA_NO_EXTENSIONS=1 (see the module docstring)")
    asyncio.run(produce(*sys.argv[1:4]))
