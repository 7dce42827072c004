"""The benchmark harness works end to end (``python -m bench --short``); nothing about speed.

Every stage runs on tiny sizes: one worker, a two-worker group, the hostile mix, the Faust
baseline. The assertions are about counts (every event once, every garbage record
dead-lettered for the contract's reason), never about rates.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from bench import main
from bench.options import parse_args
from bench.report import side_rows
from bench.run import side_stages

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
    "broker_hop": ["events", "events_per_s", "p50_ms", "p99_ms", "max_ms"],
    "naive": ["events", "seconds", "events_per_s", "startup_seconds"],
    "scale_out": [
        "events",
        "events_per_s",
        "vs_one_worker",
        "worker_cpu_seconds",
        "checkpoints",
        "view_fold_us_per_event",
        "model_ratio",
        "partition_bound_ratio",
    ],
    "hostile": ["records", "garbage", "records_per_s", "valid_events_per_s", "vs_clean"],
    "ratios": [
        "pipeline_vs_ceiling",
        "pipeline_vs_naive",
        "ceiling_vs_naive",
        "scale_out_vs_one_worker",
        "hostile_vs_clean",
    ],
    "memory": ["rss_after_drain_mb", "rss_after_latency_mb", "rss_first_sample_mb"],
}


def test_short_benchmark_writes_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    assert main(["--short", "--out", str(tmp_path)]) == 0
    elapsed = time.monotonic() - began
    assert elapsed < 60, f"--short took {elapsed:.0f} s; CI needs < 60 s"

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

    assert_partitioning(results["prefill"]["partitioning"], events)
    assert_scale_out(results["scale_out"], results["parameters"])
    assert_hostile(results["hostile"], events)

    progress = results["memory"]["rss_by_progress"]
    assert [point["fraction"] for point in progress] == [0.25, 0.5, 0.75, 1]
    assert all(point["rss_mb"] > 0 for point in progress)
    assert results["memory"]["rss_curve"]

    png = tmp_path / f"{stamped[0].stem}.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "latest.png").exists()

    table = capsys.readouterr().out
    assert "| **cx-pipeline worker** |" in table
    assert "| **2 workers**, one consumer group |" in table
    assert "| **1 worker, 10% garbage** (records/s) |" in table
    assert "all dead-lettered" in table
    assert "pipeline / naive" in table
    assert "| one hop through the broker, p50 / p99 |" in table


def assert_partitioning(partitioning: dict, events: int) -> None:
    """Every event is on one of the 32 source partitions, and no partition has them all."""
    counts = [n for topic in partitioning["events_by_partition"].values() for n in topic]
    assert len(counts) == partitioning["partitions"] == 32
    assert sum(counts) == events
    assert partitioning["max_partition_share"] == max(counts) / events < 0.5


def assert_scale_out(scale: dict, parameters: dict) -> None:
    """Both workers of the group owned partitions, and together every event was counted once."""
    assert scale["workers"] == parameters["scale_workers"] == 2
    assert len(scale["assigned_partitions"]) == 2
    assert all(owned > 0 for owned in scale["assigned_partitions"])
    assert sum(scale["assigned_partitions"]) == 32
    assert scale["events_counted"] == scale["events"] > parameters["events"]  # + latency stage
    assert scale["rejected"] == scale["duplicates"] == 0
    # a checkpoint re-sent after a lost acknowledgement (or by a worker losing its partition)
    # is in the log twice and applied once: the counts above are the exactness check
    assert 0 < scale["checkpoints_applied"] <= scale["checkpoints"]
    assert all(cpu > 0 for cpu in scale["cpu_seconds_since_start"])


def assert_hostile(hostile: dict, events: int) -> None:
    """Every garbage record rejected for the reason the contract gives, every event counted."""
    assert hostile["valid_events"] == hostile["events_counted"] == events
    assert hostile["records"] == events + hostile["garbage"]
    assert hostile["garbage_share"] == pytest.approx(0.1, abs=0.01)
    assert hostile["rejected"] == hostile["dead_letters"] == hostile["garbage"]
    assert hostile["rejected_reasons"] == hostile["garbage_reasons"]
    assert hostile["rejected_matches_garbage"] is True
    assert hostile["duplicates"] == 0
    # the hand-picked kinds are always in the mix, however short the run
    assert {"too_large", "not_an_object", "unknown_event_type"} <= set(hostile["rejected_reasons"])


def test_placement_and_intake_stages_report_through_the_main_harness(tmp_path: Path) -> None:
    """The placement and intake stages, reached from ``python -m bench``'s options, write their
    figures into the run's document and rows into its table (tiny sizes: counts, not speed)."""
    args = parse_args(["--short", "--placement-events", "2000", "--intake-events", "1000"])
    results = side_stages(args, tmp_path)

    place = results["placement"]
    assert place["events"] == 2000
    assert place["murmur2"]["misplaced_counted"] == 0
    # round-robin over 8 partitions: most records land off their key's partition and are
    # forwarded; every one of them counted as misplaced, none lost
    share = place["round_robin"]["misplaced_share"]
    assert 0.5 < share < 1
    assert place["round_robin"]["misplaced_counted"] == round(share * 2000)
    assert place["cpu_per_event_ratio"] > 0

    intake = results["intake"]
    assert intake["events"] == 1000
    assert intake["direct_produce"]["events"] == 1000
    assert set(intake["collector"]["aiohttp"]) == {"1", "20", "500"}
    assert intake["collector"]["aiohttp"]["500"]["half_load"]["requests"] >= 20

    rows = [row[0] for row in side_rows(results)]
    assert rows == [
        f"1 worker, round-robin input ({share:.0%} misplaced)",
        "collector (HTTP intake), batches of 500",
    ]
