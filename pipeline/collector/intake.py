"""Request bodies -> lists of raw events: gzip inflation under a hard limit, JSON array or NDJSON.

The size limit applies to the *decoded* body and is enforced while inflating, one bounded step at
a time, so a gzip bomb costs at most ``limit`` bytes of memory before it is refused.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

_GZIP_WBITS = 16 + zlib.MAX_WBITS
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})


class BodyError(Exception):
    """A request body the collector refuses as a whole; ``code`` is a bounded metric label."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def too_large(limit: int) -> BodyError:
    return BodyError(413, "too_large", f"body exceeds {limit} bytes (after gzip decoding)")


class BodyReader:
    """Accumulates a body chunk by chunk, inflating gzip, and refuses it past ``limit`` bytes."""

    def __init__(self, limit: int, content_encoding: str = "") -> None:
        encoding = content_encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise BodyError(
                415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported"
            )
        self.limit = limit
        self._inflater = zlib.decompressobj(_GZIP_WBITS) if "gzip" in encoding else None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self._inflater is None:
            self._keep(chunk)
            return
        data = chunk
        while data:
            try:
                # never inflate more than one byte past what the limit still allows
                out = self._inflater.decompress(data, self.limit - self._size + 1)
            except zlib.error:
                raise BodyError(400, "bad_gzip", "body is not valid gzip") from None
            self._keep(out)
            data = self._inflater.unconsumed_tail
            if self._inflater.eof:
                if data or self._inflater.unused_data:
                    raise BodyError(400, "bad_gzip", "data after the end of the gzip stream")
                return

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise too_large(self.limit)
        self._parts.append(data)

    def finish(self) -> bytes:
        if self._inflater is not None and not self._inflater.eof:
            raise BodyError(400, "bad_gzip", "gzip stream is truncated")
        return b"".join(self._parts)


def decode_body(chunks: list[bytes], limit: int, content_encoding: str = "") -> bytes:
    """All of a body at once (tests, benchmarks); the server feeds :class:`BodyReader` itself."""
    reader = BodyReader(limit, content_encoding)
    for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(
            400, "bad_json", f"body is not valid JSON: {exc.msg} at char {exc.pos}"
        ) from None


def split_events(body: bytes, content_type: str) -> list[Any]:
    """``/v1/events`` body -> its items: one per array element or non-blank NDJSON line.

    An NDJSON line that is not JSON stays raw ``bytes`` so it is rejected (and dead-lettered)
    alone; in a JSON array a syntax error spoils the whole body, which is a 400.
    """
    if content_type.lower() in NDJSON_TYPES:
        return [_ndjson_item(line) for line in body.splitlines() if line.strip()]
    parsed = _loads(body)
    if not isinstance(parsed, list):
        raise BodyError(400, "not_an_array", "body must be a JSON array of events (or NDJSON)")
    return parsed


def _ndjson_item(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return line


def segment_messages(body: bytes, route: str) -> list[Any]:
    """``batch`` routes -> the body's ``batch`` list; single-call routes -> the one message."""
    parsed = _loads(body)
    if not isinstance(parsed, dict):
        raise BodyError(400, "not_an_object", "body must be a JSON object")
    if route != "batch":
        return [parsed]
    batch = parsed.get("batch")
    if not isinstance(batch, list):
        raise BodyError(400, "no_batch", "body must be an object with a 'batch' array")
    return batch
