"""The producer's pure parts: partitions as Kafka's default partitioner places keys, and the
dead-letter headers the worker writes."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from pipeline.collector.producer import dead_letter_headers, partition_of
from pipeline.collector.triage import Rejection


@given(st.binary(min_size=1, max_size=64), st.integers(1, 64))
def test_partition_of_is_the_default_partitioner(key: bytes, partitions: int) -> None:
    everyone = list(range(partitions))
    assert partition_of(key, partitions) == DefaultPartitioner()(key, everyone, everyone)


def test_dead_letter_headers_name_the_http_origin_and_the_item() -> None:
    headers = dict(dead_letter_headers(Rejection(7, b"{}", "missing_field", "field 'x'")))
    assert headers == {
        "cx.error.reason": b"missing_field",
        "cx.error.detail": b"field 'x'",
        "cx.error.topic": b"http",
        "cx.error.partition": b"-1",
        "cx.error.offset": b"7",
    }
