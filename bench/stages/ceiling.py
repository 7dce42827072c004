"""The ceilings: a bare aiokafka consumer reading the prefilled topics, doing nothing, parsing
JSON, or running the contract check, per record.

No consumer group (manual assignment), ``getmany`` in batches of 10 000, in this process: CPU
per event is this process's CPU over the read (the harness thread pool aside, aiokafka runs in
the one event loop). ``consume`` is what no Python Kafka consumer on this broker can beat;
``orjson`` adds the cheapest full parse; ``decode`` adds ``schemas.decode_record`` (orjson + the
contract), our own code and the first thing the worker does with a record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import orjson

from bench.harness import reader
from pipeline.kafka.topics import SOURCE_TOPICS
from schemas import EventRejected, decode_record

__all__ = ["CeilingMode", "raw_ceiling"]

CeilingMode = Literal["consume", "orjson", "decode"]


def _decoder(mode: CeilingMode) -> Callable[[str, bytes | None, bytes | None], bool] | None:
    """Per-record work of ``mode``: returns False for a rejected record; None: no work."""
    if mode == "consume":
        return None
    if mode == "orjson":
        loads = orjson.loads

        def parse(topic: str, key: bytes | None, value: bytes | None) -> bool:
            loads(value or b"null")
            return True

        return parse

    def decode(topic: str, key: bytes | None, value: bytes | None) -> bool:
        try:
            decode_record(topic, key, value, now=time.time())
        except EventRejected:
            return False
        return True

    return decode


async def raw_ceiling(
    bootstrap: str, prefix: str, expected: int, *, mode: CeilingMode, timeout: float
) -> dict[str, float]:
    """Read all ``expected`` records of the four topics from the start, doing ``mode`` to each."""
    short = {prefix + name: name for name in SOURCE_TOPICS}
    work = _decoder(mode)
    async with reader(bootstrap, short) as (consumer, _):
        count = rejected = 0
        began, cpu_began = time.perf_counter(), time.process_time()
        deadline = began + timeout
        while count < expected:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"raw consumer read {count} of {expected} records")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                if work is not None:
                    topic = short[tp.topic]
                    for record in records:
                        if not work(topic, record.key, record.value):
                            rejected += 1
                count += len(records)
        seconds = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
    return {
        "mode": mode,
        "events": count,
        "seconds": seconds,
        "events_per_s": count / seconds,
        "cpu_us_per_event": cpu / count * 1e6,
        "rejected": rejected,
    }
