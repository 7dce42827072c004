"""Broker faults: outages the worker must ride out, and a broker death the demo must report.

An outage is the broker process frozen (SIGSTOP), or the network between worker and broker cut
by a loopback proxy (:mod:`tests.integration.tcp_proxy`) that resets connections or silently
black-holes them. Through each the worker must stay up and show the outage in its health
metrics, and after it reconnect by itself and count every event exactly once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pipeline.kafka.broker import EmbeddedBroker
from tests.integration.harness import (
    Pipeline,
    WorkerProcess,
    cx_samples,
    free_port,
    produce_events,
    wait_for,
)
from tests.integration.stories import survey
from tests.integration.tcp_proxy import FaultStyle, TcpProxy
from tests.oracle import WINDOWS, survey_expectations

pytestmark = pytest.mark.integration

NAMES = ("cx_nps_score", "cx_nps_responses", "cx_survey_responses")
FROZEN_SECONDS = 15
# The issue asks for cuts of 10-60 s. A blackhole of 45 s outlasts aiokafka's 40 s request
# timeout, so the stalled fetches, heartbeats (and a checkpoint send, if one was in flight) fail
# and the clients must give up their connections and rejoin the group; a shorter one just
# resumes the stalled requests, which the SIGSTOP test already covers.
CUT_SECONDS: dict[FaultStyle, float] = {"reset": 20, "blackhole": 45}


def exports(worker: WorkerProcess, events: list[dict]) -> bool:
    """The survey metrics are the oracle's and each event counted once, none as a duplicate."""
    samples = worker.samples()
    want = survey_expectations(events, time.time(), WINDOWS)
    got = cx_samples(samples, NAMES)
    return (
        set(got) == set(want)
        and all(got[k] == pytest.approx(v) for k, v in want.items())
        and sum(cx_samples(samples, ("cx_events_total",)).values()) == len(events)
        and sum(cx_samples(samples, ("cx_events_duplicate_total",)).values()) == 0
    )


def connected(worker: WorkerProcess) -> float | None:
    return worker.samples().get(("cx_pipeline_broker_connected", frozenset()))


def view_lag(worker: WorkerProcess) -> float:
    return worker.samples()[("cx_pipeline_view_lag_seconds", frozenset())]


def checkpoints(worker: WorkerProcess) -> float:
    return worker.samples()[("cx_pipeline_checkpoints_total", frozenset())]


def ride_out_outage(
    tmp_path: Path,
    bootstrap: str,
    cut: Callable[[], None],
    restore: Callable[[], None],
    outage: float,
) -> dict[str, float]:
    """Run a worker through one outage of ``outage`` s; return what was measured (seconds).

    Events come in three batches: counted before the outage, streamed right up to the cut (so
    it finds some unfetched, some fetched, some checkpointed but not yet acknowledged or not
    yet in the view) and produced after the restore. None is produced *during* a network cut:
    every client, a test producer too, reaches the broker at its advertised address, the cut one.
    """
    pipeline = Pipeline(bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        before = [survey(now - 20 * i, i % 11) for i in range(30)]
        produce_events(bootstrap, pipeline.prefix, before)
        wait_for(lambda: exports(worker, before), 60, "numbers before the outage")
        wait_for(lambda: connected(worker) == 1, 10, "the broker probe to see the broker")

        at_cut = [survey(time.time() - 10, i % 11, "email") for i in range(30)]
        for event in at_cut:  # one producer each: a stream, not one batch
            produce_events(bootstrap, pipeline.prefix, [event])
        cut()
        cut_at = time.monotonic()
        try:
            wait_for(lambda: connected(worker) == 0, 30, "the outage to show in health metrics")
            detected = time.monotonic() - cut_at
            written = checkpoints(worker)
            seen: list[float | None] = []
            while time.monotonic() < cut_at + outage:  # the injected fault's duration
                seen.append(connected(worker))  # /metrics must keep answering meanwhile
                time.sleep(0.5)
            assert set(seen) == {0}, f"broker_connected during the outage: {seen}"
            assert checkpoints(worker) == written, "a checkpoint got through the outage"
            stale = view_lag(worker)
            assert stale >= outage - detected - 5, f"view lag {stale} s hides the outage"
            assert worker.proc is not None and worker.proc.poll() is None
        finally:
            restore()
        restored_at = time.monotonic()

        wait_for(lambda: connected(worker) == 1, 60, "the worker to reconnect by itself")
        reconnected = time.monotonic() - restored_at
        after = [survey(time.time() - 5, 10, "chat") for _ in range(10)]
        produce_events(bootstrap, pipeline.prefix, after)
        every = before + at_cut + after
        wait_for(lambda: exports(worker, every), 90, "every event counted once after it")
        assert view_lag(worker) < 5, "the view lag did not recover"
        exact = time.monotonic() - restored_at
        assert checkpoints(worker) > written
        assert worker.proc is not None and worker.proc.poll() is None
        return {
            "outage": restored_at - cut_at,
            "detected": detected,
            "reconnected": reconnected,
            "exact": exact,
        }
    finally:
        pipeline.stop()


def report(fault: str, timings: dict[str, float]) -> None:
    """Print the measured seconds (``pytest -s``): how long recovery takes is worth watching."""
    print(f"{fault}: " + ", ".join(f"{key} {value:.1f}s" for key, value in timings.items()))


def test_worker_rides_out_a_frozen_broker_and_loses_nothing(tmp_path):
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        pid = broker.pid
        assert pid is not None
        # requests hang as in a blackhole, but the broker's own clocks stop too
        timings = ride_out_outage(
            tmp_path,
            broker.bootstrap,
            lambda: os.kill(pid, signal.SIGSTOP),
            lambda: os.kill(pid, signal.SIGCONT),
            FROZEN_SECONDS,
        )
    report("SIGSTOP", timings)


@pytest.mark.parametrize("style", list(CUT_SECONDS))
def test_worker_rides_out_a_network_cut_and_loses_nothing(tmp_path, style: FaultStyle):
    with (
        TcpProxy() as proxy,
        EmbeddedBroker(log_path=tmp_path / "tansu.log", advertised_port=proxy.port) as broker,
    ):
        proxy.upstream = (broker.host, broker.port)
        timings = ride_out_outage(
            tmp_path, proxy.address, lambda: proxy.cut(style), proxy.restore, CUT_SECONDS[style]
        )
    report(style, timings)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the proxy's cuts reset us too
            while data := self.request.recv(4096):
                self.request.sendall(data)


def test_tcp_proxy_faults_do_what_they_claim():
    """The proxy itself: a reset refuses, a blackhole holds bytes, and restore undoes both."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo) as echo:
        echo.daemon_threads = True
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        try:
            with TcpProxy(echo.server_address[:2]) as proxy:

                def dial() -> socket.socket:
                    return socket.create_connection((proxy.host, proxy.port), timeout=0.5)

                with dial() as old:
                    old.sendall(b"a")
                    assert old.recv(1) == b"a"
                    proxy.cut("reset")
                    with pytest.raises(ConnectionResetError):
                        old.recv(1)
                with pytest.raises(ConnectionRefusedError):
                    dial().close()
                proxy.restore()

                with dial() as old:
                    old.sendall(b"b")
                    assert old.recv(1) == b"b"
                    proxy.cut("blackhole")
                    with dial() as new:
                        old.sendall(b"c")
                        new.sendall(b"d")
                        for held in (old, new):
                            with pytest.raises(TimeoutError):
                                held.recv(1)
                        proxy.restore()
                        assert (old.recv(1), new.recv(1)) == (b"c", b"d")
        finally:
            echo.shutdown()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_demo_exits_non_zero_when_its_embedded_broker_dies(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.tools.cli",
            "demo",
            "--no-live",
            "--rate",
            "5",
            "--history",
            "0",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def broker_child():
            children = psutil.Process(demo.pid).children(recursive=True)
            return next((c for c in children if "tansu" in " ".join(c.cmdline())), None)

        tansu = wait_for(broker_child, 30, "the embedded broker to start")
        wait_for(lambda: ready(port), 60, "the demo's worker to be ready")
        tansu.kill()
        code = demo.wait(timeout=30)  # must not hang
        output = demo.stdout.read() if demo.stdout else ""
        assert code != 0
        assert "embedded broker exited" in output
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
