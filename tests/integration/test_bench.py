"""The benchmark harness works end to end (``python -m bench --short``); nothing about speed."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from bench import main

pytestmark = pytest.mark.integration

POSITIVE = {
    "machine": ["cpu_count", "memory_gb"],
    "prefill": ["events", "bytes_mean", "produce_events_per_s"],
    "raw_consume": ["events", "seconds", "events_per_s"],
    "raw_ceiling": ["events", "seconds", "events_per_s"],
    "pipeline": [
        "events",
        "events_per_s",
        "events_per_s_from_start",
        "events_per_s_from_assigned",
        "seconds_from_start",
        "startup_seconds",
        "worker_cpu_seconds",
        "worker_cpu_us_per_event",
        "scrape_ms_median",
    ],
    "latency": [
        "target_events_per_s",
        "events",
        "seconds",
        "events_per_s",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
    ],
    "naive": ["events", "seconds", "events_per_s", "startup_seconds"],
    "ratios": ["pipeline_vs_ceiling", "pipeline_vs_naive", "ceiling_vs_naive"],
    "memory": ["rss_after_drain_mb", "rss_after_latency_mb", "rss_first_sample_mb"],
}


def test_short_benchmark_writes_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    assert main(["--short", "--out", str(tmp_path)]) == 0
    elapsed = time.monotonic() - began
    assert elapsed < 90, f"--short took {elapsed:.0f} s; CI needs < 90 s"

    results = orjson.loads((tmp_path / "latest.json").read_bytes())
    stamped = list(tmp_path.glob("2*.json"))
    assert len(stamped) == 1
    assert orjson.loads(stamped[0].read_bytes()) == results
    for section, fields in POSITIVE.items():
        for name in fields:
            value = results[section][name]
            assert isinstance(value, int | float) and value > 0, f"{section}.{name} = {value!r}"
    assert results["machine"]["cpu_model"]
    assert results["machine"]["python"]
    assert results["parameters"]["short"] is True

    events = results["parameters"]["events"]
    # every stage saw exactly the prefilled events, all valid, each counted once
    assert results["prefill"]["events"] == events
    assert results["raw_ceiling"]["events"] == events
    assert results["raw_ceiling"]["rejected"] == 0
    assert results["pipeline"]["events_counted"] == events
    assert results["pipeline"]["rejected"] == 0
    assert results["pipeline"]["duplicates"] == 0
    assert results["naive"]["events"] == results["parameters"]["naive_events"]
    assert results["naive"]["rejected"] == 0
    assert set(results["prefill"]["topics"]) == {"carts", "orders", "tickets", "surveys"}

    progress = results["memory"]["rss_by_progress"]
    assert [point["fraction"] for point in progress] == [0.25, 0.5, 0.75, 1]
    assert all(point["rss_mb"] > 0 for point in progress)
    assert results["memory"]["rss_curve"]

    png = tmp_path / f"{stamped[0].stem}.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "latest.png").exists()

    table = capsys.readouterr().out
    assert "| **cx-pipeline worker** |" in table
    assert "pipeline / naive" in table
