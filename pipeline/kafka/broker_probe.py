"""Is a Kafka broker up, and is it ours? A hand-written Metadata v2 probe (its cluster id tells
our embedded broker from a stranger on the port) and :func:`wait_until_ready` for any cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import Any

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be found, did not start, or is not reachable."""


def _metadata_request(correlation_id: int) -> bytes:
    """Metadata v2 asking for no topics: cheap, and v2 is the first version with cluster_id."""
    client_id = b"cx-probe"
    body = struct.pack(">hhih", 3, 2, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # topics: empty array
    return struct.pack(">i", len(body)) + body


def _parse_cluster_id(payload: bytes, correlation_id: int) -> str | None:
    """Cluster id from a Metadata v2 response body (after the size prefix)."""
    offset = 0

    def take(fmt: str) -> Any:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, payload, offset)
        offset += struct.calcsize(fmt)
        return value

    def string() -> str | None:
        nonlocal offset
        size = take(">h")
        if size < 0:
            return None
        value = payload[offset : offset + size].decode()
        offset += size
        return value

    if take(">i") != correlation_id:
        raise BrokerError("metadata response with a foreign correlation id")
    for _ in range(take(">i")):  # brokers: node_id, host, port, rack
        take(">i")
        string()
        take(">i")
        string()
    return string()


def probe_sync(host: str, port: int, timeout: float) -> str | None:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_metadata_request(1))
        header = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", header)
        return _parse_cluster_id(_recv_exact(sock, size), 1)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks += chunk
    return bytes(chunks)


async def probe_async(host: str, port: int, timeout: float) -> str | None:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_metadata_request(1))
            await writer.drain()
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            return _parse_cluster_id(await reader.readexactly(size), 1)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _QuietBootstrap(logging.Filter):
    """Hide aiokafka's per-attempt connection errors while we are expected to retry."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Unable connect to", "Unable to request"))


async def wait_until_ready(bootstrap: str, timeout: float, **client_options: Any) -> None:
    """Wait until a (possibly external) Kafka cluster answers a Metadata request.

    ``client_options`` go to :class:`aiokafka.AIOKafkaClient` (``security_protocol``,
    ``ssl_context``, ``sasl_*``...), so TLS/SASL clusters work. Retries until ``timeout``
    seconds have passed, then raises :class:`BrokerError` naming the last error.
    """
    from aiokafka.client import AIOKafkaClient

    deadline = time.monotonic() + timeout
    quiet = _QuietBootstrap()
    client_log = logging.getLogger("aiokafka")  # aiokafka.client logs as "aiokafka"
    client_log.addFilter(quiet)
    last_error: BaseException | None = None
    delay = 0.05
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            request_ms = max(100, int(min(remaining, 5.0) * 1000))
            client = AIOKafkaClient(
                bootstrap_servers=bootstrap, request_timeout_ms=request_ms, **client_options
            )
            try:
                async with asyncio.timeout(remaining):
                    await client.bootstrap()
                if client.cluster.brokers():
                    return
                last_error = BrokerError("metadata listed no brokers")
            except Exception as exc:
                last_error = exc
            finally:
                await client.close()
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
    finally:
        client_log.removeFilter(quiet)
    raise BrokerError(
        f"Kafka at {bootstrap} not ready after {timeout:g}s"
        + (f": {last_error!r}" if last_error else "")
    )
