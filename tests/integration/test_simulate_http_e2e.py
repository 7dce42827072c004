"""`cxpipe simulate --via http`: the simulator's traffic through a real collector process into
the real broker and a real worker, whose counts must equal what was sent (and the oracle)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.tools.simulate import HttpSink, SimEvent, run_live
from tests.integration.harness import Pipeline, cx_samples, parse_samples, wait_for
from tests.oracle import SURVEY_METRICS, WINDOWS, survey_expectations

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKENS = "first-token-0123,second-token-4567"
FIRST_TOKEN = TOKENS.split(",")[0]
MID_MORNING = 10.0


@contextmanager
def collector_process(pipeline: Pipeline, log_path: Path) -> Iterator[str]:
    """`python -m pipeline.collector` on a free port for ``pipeline``'s topics; yields its URL."""
    env = {
        **os.environ,
        **pipeline.env(),
        "CX_COLLECTOR_TOKENS": TOKENS,
        "CX_COLLECTOR_PORT": "0",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.collector"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO,
        )
        try:
            url = process.stdout.readline().decode().strip()  # type: ignore[union-attr]
            assert url.startswith("http://"), f"collector did not start: {log_path.read_text()}"
            yield url
        finally:
            process.terminate()
            process.wait(30)


def scrape(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return parse_samples(response.read().decode())


def total(samples: dict, name: str) -> float:
    return sum(value for (metric, _), value in samples.items() if metric == name)


def events_by_topic_and_type(samples: dict) -> Counter:
    counted: Counter = Counter()
    for (_, labels), value in cx_samples(samples, ("cx_events_total",)).items():
        label = dict(labels)
        counted[(label["topic"], label["event_type"])] = int(value)
    return counted


class RecordingSink(HttpSink):
    """The real HTTP sink, remembering every event it got an answer for (the test's oracle)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[SimEvent] = []

    async def send_events(self, events: Sequence[SimEvent]) -> int:
        done = await super().send_events(events)
        self.sent.extend(events)
        return done


def test_simulated_traffic_via_http_counts_exactly_what_was_sent(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        with collector_process(pipeline, tmp_path / "collector.log") as url:

            async def simulate() -> RecordingSink:
                # batches of 200: the history goes out as many full requests; a short TTR gets
                # surveys; the shop's local time is mid-morning, whatever the hour the test runs
                # at, so the diurnal profile cannot starve a topic (it did at ~05:20 UTC)
                async with RecordingSink(url, FIRST_TOKEN, batch=200) as sink:
                    await run_live(
                        sink,
                        rate=20,
                        duration=3,
                        seed=11,
                        history=600,
                        ttr_median=30,
                        utc_offset_hours=MID_MORNING - time.time() % 86_400 / 3600,
                    )
                return sink

            sink = asyncio.run(simulate())
            collector = scrape(url)

        sent = [event.value for event in sink.sent]
        assert len(sent) > 200, "the simulation should produce hundreds of events"
        assert (sink.accepted, sum(sink.rejected.values())) == (len(sent), 0)
        assert total(collector, "cx_collector_events_accepted_total") == len(sent)
        assert total(collector, "cx_collector_events_rejected_total") == 0
        assert total(collector, "cx_collector_requests_total") >= len(sent) / 200

        expected = Counter(
            (pipeline.prefix + event.topic, str(event.value["event_type"])) for event in sink.sent
        )
        assert len({topic for topic, _ in expected}) == 4, expected

        def counted_as_sent() -> bool:
            return events_by_topic_and_type(worker.samples()) == expected

        wait_for(counted_as_sent, 90, "cx_events_total equal to the events sent via HTTP")

        def surveys_match_oracle() -> bool:
            want = survey_expectations(sent, time.time(), WINDOWS)
            got = cx_samples(worker.samples(), SURVEY_METRICS)
            return set(got) == set(want) and all(
                got[key] == pytest.approx(value) for key, value in want.items()
            )

        wait_for(surveys_match_oracle, 30, "survey metrics equal to the oracle")
    finally:
        pipeline.stop()


def run_simulate(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CX_COLLECTOR_TOKENS": TOKENS}
    env.pop("CX_BOOTSTRAP_SERVERS", None)  # --via http needs no broker
    return subprocess.run(
        [sys.executable, "-m", "pipeline.tools.cli", "simulate", "--via", "http", url, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_simulate_cli_via_http_uses_the_first_collector_token_and_counts_add_up(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    try:
        worker = pipeline.start_worker(tmp_path)
        with collector_process(pipeline, tmp_path / "collector.log") as url:
            refused = run_simulate(url, "--duration", "2", "--token", "not-a-token")
            assert refused.returncode == 1, refused.stderr
            assert "HTTP 401" in refused.stderr and "not-a-token" not in refused.stderr

            result = run_simulate(url, "--rate", "30", "--duration", "2", "--seed", "5")
            assert result.returncode == 0, result.stderr
            collector = scrape(url)

        match = re.search(r"sent via \S+/v1/events: (\d+) accepted, 0 rejected", result.stderr)
        assert match, result.stderr
        accepted = int(match.group(1))
        assert accepted > 0
        assert total(collector, "cx_collector_events_accepted_total") == accepted
        assert (
            collector[
                ("cx_collector_refused_requests_total", frozenset({("reason", "unauthorized")}))
            ]
            >= 1
        )
        wait_for(
            lambda: sum(events_by_topic_and_type(worker.samples()).values()) == accepted,
            90,
            "the worker to count every event the CLI sent",
        )
    finally:
        pipeline.stop()
