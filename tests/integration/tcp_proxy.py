"""A loopback TCP proxy that a test can cut and restore: network faults without root or iptables.

Put it between Kafka clients and the broker (the broker must *advertise* the proxy's port, see
``EmbeddedBroker(advertised_port=...)``), then :meth:`TcpProxy.cut` and :meth:`TcpProxy.restore`.
Two fault styles, because clients notice them very differently:

* ``"reset"``: every live connection is reset (RST) and new ones are refused
  (``ECONNREFUSED``), as when a firewall rejects or the peer host is gone. Clients fail fast.
* ``"blackhole"``: bytes stop flowing both ways and no socket is closed, as when a link
  silently drops packets. Clients only notice through their own timeouts. New connections
  get no answer either (unlike a real blackhole their connect succeeds: the kernel completes
  the handshake). On restore the held bytes flow on, as TCP retransmission would deliver
  them, even those of a client that gave up meanwhile and closed its socket.

The proxy runs an asyncio loop in a daemon thread, so a synchronous test drives it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal, Self

FaultStyle = Literal["reset", "blackhole"]

_CHUNK = 65_536
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


class TcpProxy:
    """Forward ``host:port`` (picked at :meth:`start`) to ``upstream``, until cut."""

    def __init__(self, upstream: tuple[str, int] | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.upstream = upstream  # may be set after start(): the broker needs our port first
        self.fault: FaultStyle | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._placeholder: socket.socket | None = None
        self._flowing: asyncio.Event | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._upstreams: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self, style: FaultStyle) -> None:
        """Start the fault; :meth:`restore` ends it. Returns once it is in effect."""
        if self.fault is not None:
            raise RuntimeError(f"already cut ({self.fault})")
        self._call(self._cut(style))
        self.fault = style

    def restore(self) -> None:
        """End the fault: accept and forward again (a blackhole also releases held bytes)."""
        if self.fault is None:
            raise RuntimeError("not cut")
        self._call(self._restore())
        self.fault = None

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- inside the proxy's loop ------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()
        assert self._server is not None
        self.port = self._server.sockets[0].getsockname()[1]

    async def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def _stop(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()
        if self._placeholder is not None:
            self._placeholder.close()
        assert self._flowing is not None
        self._flowing.set()  # let stalled handlers run into their closed sockets and end
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def _cut(self, style: FaultStyle) -> None:
        assert self._flowing is not None and self._server is not None
        if style == "blackhole":
            self._flowing.clear()
            return
        self._server.close()  # closes the listening socket now
        self._server = None
        # Keep the port bound but not listening: connects are refused (RST to the SYN), and no
        # other process can take the port before restore() listens on it again.
        self._placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._placeholder.bind((self.host, self.port))
        self._reset_all()

    async def _restore(self) -> None:
        assert self._flowing is not None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
            await self._listen()
        self._flowing.set()

    def _reset_all(self) -> None:
        for writer in [*self._clients, *self._upstreams]:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            writer.transport.abort()
        self._clients.clear()
        self._upstreams.clear()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        assert self._flowing is not None
        self._clients.add(client)
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()  # a connection made in a blackhole waits for restore
            if client.is_closing() or self.upstream is None:
                return
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
            self._upstreams.add(upstream)
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(self._pump(client_reader, upstream))
                pumps.create_task(self._pump(upstream_reader, client))
        except* OSError:
            pass  # reset by a cut or by a peer: either way this connection is over
        finally:  # close() still sends what is buffered; a cut has aborted the sockets already
            self._clients.discard(client)
            client.close()
            if upstream is not None:
                self._upstreams.discard(upstream)
                upstream.close()
            self._handlers.discard(handler)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        while data := await reader.read(_CHUNK):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        await self._flowing.wait()
        if not writer.is_closing() and writer.can_write_eof():
            writer.write_eof()

    # -- context manager --------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
