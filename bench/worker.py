"""A real pipeline worker as a subprocess (``python -m pipeline.tools.cli worker``) and its /metrics.

One implementation for the benchmark and the integration tests (tests/integration/harness.py
re-exports it), so both start, probe and stop a worker the same way. The worker is read only
from outside, as Prometheus would: ``cx_events_total`` (whole shop, every valid first-seen
event, counted once its checkpoint reached the view) says how far the pipeline has got, and
psutil gives the process's RSS and CPU time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "MetricsSnapshot",
    "Samples",
    "WorkerDied",
    "WorkerProcess",
    "free_port",
    "parse_metrics",
    "parse_samples",
    "terminate",
    "worker_env",
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""Every sample of a scrape: (name, labels) -> value."""


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited after ``timeout``; its exit code."""
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_samples(text: str) -> Samples:
    """Every sample of Prometheus text format (the full parser: for assertions, not hot loops)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The few numbers the benchmark needs from one scrape."""

    events: float
    """Sum of ``cx_events_total`` over all topics and event types."""
    rejected: float
    duplicates: float
    assigned_partitions: float
    gc_full_collections: float
    """``python_gc_collections_total{generation="2"}``: full collections pause the worker."""


_GC_FULL = 'python_gc_collections_total{generation="2"}'


_SUMMED = (
    "cx_events_total",
    "cx_events_rejected_total",
    "cx_events_duplicate_total",
    "cx_pipeline_assigned_partitions",
)
SNAPSHOT_SAMPLES = (*_SUMMED, "python_gc_collections_total")
"""What a snapshot reads: asked for by name (``/metrics?name[]=``), so polling ~10x a second
costs the worker a few counters, not a render of every CX family (~4 % of its CPU in a drain)."""


def parse_metrics(text: str) -> MetricsSnapshot:
    """Sum the counters out of Prometheus text format (no full parser: this runs ~10x a second)."""
    sums = dict.fromkeys((*_SUMMED, _GC_FULL), 0.0)
    for line in text.splitlines():
        if line.startswith("cx_"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
        elif line.startswith(_GC_FULL):
            name = _GC_FULL
        else:
            continue
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return MetricsSnapshot(
        events=sums["cx_events_total"],
        rejected=sums["cx_events_rejected_total"],
        duplicates=sums["cx_events_duplicate_total"],
        assigned_partitions=sums["cx_pipeline_assigned_partitions"],
        gc_full_collections=sums[_GC_FULL],
    )


def worker_env(*, bootstrap: str, prefix: str, app_id: str, **settings: str) -> dict[str, str]:
    """``CX_*`` variables of one deployment; ``settings`` are further fields, lower case."""
    return {
        "CX_BOOTSTRAP_SERVERS": bootstrap,
        "CX_TOPIC_PREFIX": prefix,
        "CX_APP_ID": app_id,
        "CX_SESSION_TIMEOUT": "1",  # a stopped or killed worker's partitions move within ~1 s
        **{f"CX_{name.upper()}": value for name, value in settings.items()},
    }


class WorkerDied(AssertionError):
    """The worker process exited while it was expected to run (an AssertionError for pytest)."""


class WorkerProcess:
    """``python -m pipeline.tools.cli worker`` with ``env`` (see :func:`worker_env`) on a free port."""

    def __init__(self, env: Mapping[str, str], log_path: Path, pin: int | None = None) -> None:
        self.port = free_port()
        self.pin = pin
        """Run under ``taskset -c pin`` (one core): how a competent operator runs a Python
        worker whose Kafka client has a thread of its own."""
        self.env = {**os.environ, **env, "CX_METRICS_PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.process: psutil.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready_timeout: float | None = 60.0) -> None:
        """Spawn the worker; wait until /readyz answers 200 unless ``ready_timeout`` is None
        (the benchmark times the start-up itself)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.pinning(), sys.executable, "-m", "pipeline.tools.cli", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.process = psutil.Process(self.proc.pid)
        if ready_timeout is not None:
            self.wait_ready(ready_timeout)

    def pinning(self) -> list[str]:
        """The command prefix that pins the process (taskset execs it: the pid stays)."""
        return [] if self.pin is None else ["taskset", "-c", str(self.pin)]

    def wait_ready(self, timeout: float, interval: float = 0.1) -> None:
        """Poll /readyz until it answers 200; fail at once if the worker exits."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker not ready at {self.url} after {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(interval)

    def ready(self) -> bool:
        self.check_alive()
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise WorkerDied(
                f"worker exited with {self.proc.returncode}; log {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics_text(self, timeout: float = 5.0, names: Sequence[str] = ()) -> str:
        """The worker's /metrics, or only the samples ``names`` lists."""
        query = "?" + urllib.parse.urlencode([("name[]", name) for name in names]) if names else ""
        with urllib.request.urlopen(f"{self.url}/metrics{query}", timeout=timeout) as response:
            return response.read().decode()

    def samples(self) -> Samples:
        return parse_samples(self.metrics_text())

    def snapshot(self) -> MetricsSnapshot | None:
        """The counters now, or None while /metrics does not answer yet."""
        self.check_alive()
        try:
            return parse_metrics(self.metrics_text(names=SNAPSHOT_SAMPLES))
        except OSError:
            return None

    def rss(self) -> int:
        assert self.process is not None
        return self.process.memory_info().rss

    def cpu_seconds(self) -> float:
        assert self.process is not None
        times = self.process.cpu_times()
        return times.user + times.system

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a clean leave: last checkpoint, group leave), SIGKILL after ``timeout``."""
        return terminate(self.proc, timeout)

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL: a crash, nothing flushed."""
        assert self.proc is not None
        self.proc.kill()
        return self.proc.wait(timeout)
