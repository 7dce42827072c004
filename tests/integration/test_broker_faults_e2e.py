"""Broker faults: an outage the worker must ride out, and a broker death the demo must report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from pipeline.broker import EmbeddedBroker
from tests.integration.harness import Pipeline, cx_samples, free_port, produce_events, wait_for
from tests.integration.stories import survey
from tests.oracle import survey_expectations

pytestmark = pytest.mark.integration

WINDOWS = {"5m": 300.0, "1h": 3600.0, "24h": 86400.0}
NAMES = ("cx_nps_score", "cx_nps_responses", "cx_survey_responses")
OUTAGE_SECONDS = 15


def exports(worker, events) -> bool:
    want = survey_expectations(events, time.time(), WINDOWS)
    got = cx_samples(worker.samples(), NAMES)
    return set(got) == set(want) and all(got[k] == pytest.approx(v) for k, v in want.items())


def connected(worker) -> float | None:
    return worker.samples().get(("cx_pipeline_broker_connected", frozenset()))


def test_worker_rides_out_a_frozen_broker_and_loses_nothing(tmp_path):
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        pipeline = Pipeline(broker.bootstrap)
        try:
            worker = pipeline.start_worker(tmp_path)
            now = time.time()
            before = [survey(now - 20 * i, i % 11) for i in range(30)]
            produce_events(broker.bootstrap, pipeline.prefix, before)
            wait_for(lambda: exports(worker, before), 60, "numbers before the outage")

            os.kill(broker.pid, signal.SIGSTOP)  # requests hang, as in a network partition
            try:
                wait_for(lambda: connected(worker) == 0, 30, "the outage to show in health metrics")
                time.sleep(OUTAGE_SECONDS)  # the injected fault's duration, not a wait for a result
            finally:
                os.kill(broker.pid, signal.SIGCONT)

            after = [survey(time.time() - 5, 10, "chat") for _ in range(10)]
            produce_events(broker.bootstrap, pipeline.prefix, after)
            wait_for(lambda: connected(worker) == 1, 60, "the worker to reconnect by itself")
            wait_for(
                lambda: exports(worker, before + after), 90, "every event counted once after it"
            )
            assert worker.proc is not None and worker.proc.poll() is None
        finally:
            pipeline.stop()


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
            "pipeline.cli",
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
