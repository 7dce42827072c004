"""``cxpipe emit FILE.jsonl``: validate a file of events, then produce each to its topic.

Every line is checked against the contract before anything is sent, so a bad file never leaves
half its events in Kafka; invalid lines are reported with their line number and reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.settings import Settings
from schemas import KEY_FIELD, TOPIC_OF_EVENT_TYPE, EventRejected, decode_record


def route(line: bytes, now: float, settings: Settings) -> tuple[str, bytes]:
    """(topic short name, key) of a valid event line; raises EventRejected otherwise."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        raw = None
    event_type = raw.get("event_type") if isinstance(raw, dict) else None
    topic = TOPIC_OF_EVENT_TYPE.get(event_type) if isinstance(event_type, str) else None
    key_value = raw.get(KEY_FIELD[topic]) if topic and isinstance(raw, dict) else None
    key = key_value.encode() if isinstance(key_value, str) else None
    # decode_record gives the precise reason for anything wrong, including an unroutable line
    decode_record(
        topic or "surveys",
        key,
        line,
        now=now,
        max_bytes=settings.max_record_bytes,
        max_depth=settings.max_json_depth,
        max_future_skew=settings.max_future_skew,
    )
    assert topic is not None and key is not None
    return topic, key


async def emit_file(
    settings: Settings, path: Path, *, skip_invalid: bool, report: Callable[..., None]
) -> dict[str, int]:
    now = time.time()
    valid: list[tuple[str, bytes, bytes]] = []
    invalid = 0
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                topic, key = route(line, now, settings)
            except EventRejected as rejected:
                invalid += 1
                report(f"{path}:{number}: {rejected.reason}: {rejected.detail}", err=True)
                continue
            valid.append((settings.topic(topic), key, line))
    if invalid and not skip_invalid:
        report(f"{invalid} invalid line(s); nothing produced (use --skip-invalid)", err=True)
        return {"produced": 0, "invalid": invalid}
    producer = AIOKafkaProducer(**settings.kafka_client_options(), linger_ms=10, acks="all")
    await producer.start()
    try:
        batch = [await producer.send(topic, value=value, key=key) for topic, key, value in valid]
        for future in batch:
            await future
    finally:
        await producer.stop()
    return {"produced": len(valid), "invalid": invalid}
