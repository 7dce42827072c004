"""Request bodies: gzip inflated under a hard limit (a bomb is refused before it is inflated),
JSON arrays and NDJSON split into items, Segment batch bodies."""

from __future__ import annotations

import gzip
import itertools
import tracemalloc
import zlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.collector.intake import (
    BodyError,
    BodyReader,
    decode_body,
    segment_messages,
    split_events,
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.binary(max_size=5000), st.lists(st.integers(0, 10_000), max_size=6), st.integers(1, 6000))
def test_gzip_in_any_chunking_decodes_to_the_original_or_is_refused_by_size(
    body: bytes, cuts: list[int], limit: int
) -> None:
    compressed = gzip.compress(body)
    if len(body) > limit:
        with pytest.raises(BodyError) as refused:
            decode_body(chunked(compressed, cuts), limit, "gzip")
        assert refused.value.status == 413
    else:
        assert decode_body(chunked(compressed, cuts), limit, "gzip") == body


@given(st.binary(max_size=3000), st.lists(st.integers(0, 5000), max_size=4), st.integers(1, 3000))
def test_plain_body_limit(body: bytes, cuts: list[int], limit: int) -> None:
    if len(body) > limit:
        with pytest.raises(BodyError, match="exceeds"):
            decode_body(chunked(body, cuts), limit)
    else:
        assert decode_body(chunked(body, cuts), limit, "identity") == body


def test_gzip_bomb_is_refused_without_being_inflated() -> None:
    inflated_size = 256 << 20  # 256 MiB of zeros (256x the limit), about 250 kB compressed
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(deflater.compress(zeros) for _ in range(inflated_size >> 20)) + deflater.flush()
    tracemalloc.start()
    try:
        with pytest.raises(BodyError) as refused:
            decode_body([bomb[i : i + 65536] for i in range(0, len(bomb), 65536)], 1 << 20, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert peak < 8 << 20, f"peak {peak} bytes: the bomb was inflated"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (gzip.compress(b"[]")[:-5], "bad_gzip"),  # truncated
        (gzip.compress(b"[]") + b"junk", "bad_gzip"),
        (b"not gzip at all", "bad_gzip"),
    ],
)
def test_broken_gzip_is_400(data: bytes, code: str) -> None:
    with pytest.raises(BodyError) as refused:
        decode_body([data], 1000, "gzip")
    assert (refused.value.status, refused.value.code) == (400, code)


def test_unknown_encoding_is_415() -> None:
    with pytest.raises(BodyError) as refused:
        BodyReader(100, "br")
    assert refused.value.status == 415


@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)), max_size=10)
)
def test_json_array_and_ndjson_give_the_same_items(items: list[dict]) -> None:
    ndjson = b"\n".join(orjson.dumps(item) for item in items) + b"\n\n"
    assert split_events(orjson.dumps(items), "application/json") == items
    assert split_events(ndjson, "application/x-ndjson") == items


def test_bad_ndjson_line_stays_raw_but_a_bad_array_is_400() -> None:
    assert split_events(b'{"a":1}\n{oops\r\n', "application/x-ndjson") == [{"a": 1}, b"{oops"]
    for body in (b"{oops", b'{"a": 1}', b"3", b""):
        with pytest.raises(BodyError) as refused:
            split_events(body, "application/json")
        assert refused.value.status == 400


def test_segment_bodies() -> None:
    assert segment_messages(b'{"batch": [{"type": "page"}], "sentAt": "x"}', "batch") == [
        {"type": "page"}
    ]
    assert segment_messages(b'{"type": "track"}', "track") == [{"type": "track"}]
    for body, route in ((b"[]", "batch"), (b'{"batch": {}}', "batch"), (b"[1]", "track")):
        with pytest.raises(BodyError):
            segment_messages(body, route)
