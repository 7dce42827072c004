"""The Quix Streams 3.x baseline: a real slice of our job, written the way Quix Streams does it.

What it computes, per channel, in 5m, 1h and 24h event-time windows (``occurred_at``, grace 24 h
so nothing in the prefill is dropped as late) — ``--windows sliding`` (rolling windows, our
semantics: Quix updates every window a response falls into, so its cost per event grows with
the responses in a window) or ``tumbling`` (fixed, aligned buckets: cheaper, and a different
answer than a rolling window gives) — with Quix's own windowing and RocksDB
state (changelog topics on, as Quix's defaults recover state): the survey responses by kind,
NPS promoters / passives / detractors, CSAT responses scoring 4-5, and the CES sum — exactly the
ingredients ``pipeline/domain/surveys.py`` keeps, from which NPS, CSAT and CES are computed.
Per channel needs a re-key: ``group_by(channel)`` (a repartition topic, as Quix does it).

What it does NOT do that our worker does: the contract check (it parses JSON with Quix's
deserializer and reads the fields it needs), dedupe by ``event_id``, exactly-once (Quix runs
at-least-once here), the other three topics' metrics, and /metrics exposition. So it does less
work per event than our worker; compare CPU per survey event with that in mind.

Runs as a child (``python -m bench.stages.quix_survey ...``, see :mod:`bench.harness.child`):
it stops once ``--count`` survey events have entered the windows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.harness import run_child, say
from bench.harness.context import Run

__all__ = ["EMPTY", "add_response", "main", "quix_baseline"]

WINDOWS = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
EMPTY = {
    "responses_nps": 0,
    "responses_csat": 0,
    "responses_ces": 0,
    "nps_promoter": 0,
    "nps_passive": 0,
    "nps_detractor": 0,
    "csat_satisfied": 0,
    "ces_sum": 0,
}


def add_response(totals: dict[str, int], event: dict[str, Any]) -> dict[str, int]:
    """Fold one survey response into a window's ingredients (as SurveyHandler observes them)."""
    survey, score = event["survey"], event["score"]
    totals = dict(totals)
    totals[f"responses_{survey}"] += 1
    if survey == "nps":
        category = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
        totals[f"nps_{category}"] += 1
    elif survey == "csat":
        totals["csat_satisfied"] += score >= 4
    else:
        totals["ces_sum"] += score
    return totals


def _event_time(value: Any, key: Any, timestamp: int, headers: Any) -> int:
    return int(
        datetime.fromisoformat(value["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages.quix_survey", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True, help="the full name of the surveys topic")
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--windows", choices=("sliding", "tumbling"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from quixstreams import Application

    state: dict[str, float] = {"events": 0}
    with tempfile.TemporaryDirectory(prefix="bench-quix-") as state_dir:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
            # a group join on Tansu takes half the session timeout (research/perf.md); our
            # workers and the Faust agents use 1 s, librdkafka's floor here is higher
            consumer_extra_config={"session.timeout.ms": 2000, "heartbeat.interval.ms": 500},
        )
        topic = app.topic(args.topic, value_deserializer="json", timestamp_extractor=_event_time)
        # Tansu's DescribeConfigs leaves out retention.ms, which Quix reads to derive its
        # repartition and changelog topics; Tansu keeps every record, i.e. -1.
        topic.broker_config.extra_config.setdefault("retention.ms", "-1")
        sdf = app.dataframe(topic)
        sdf = sdf.filter(lambda event: event.get("event_type") == "survey.submitted")
        sdf = sdf.group_by(lambda event: event.get("channel", "web"), name="channel")

        def count(event: Any) -> None:
            if state["events"] == 0:
                state.update(first_event_at=time.time(), cpu_at_first_event=time.process_time())
            state["events"] += 1
            if state["events"] >= args.count:
                state.update(done_at=time.time(), cpu_at_done=time.process_time())
                app.stop()

        sdf = sdf.update(count)
        for name, duration in WINDOWS.items():
            define = sdf.sliding_window if args.windows == "sliding" else sdf.tumbling_window
            window = define(duration, grace_ms=WINDOWS["24h"], name=f"surveys_{name}")
            window.reduce(add_response, lambda event: add_response(EMPTY, event)).current()
        app.run()
    args.out.write_bytes(orjson.dumps(state) + b"\n")
    return 0


def quix_baseline(run: Run, surveys: int, windows: str, pin: int | None) -> dict[str, Any]:
    """Quix Streams over the first ``surveys`` survey events of the prefill (see the module
    docstring): sliding windows cost more per event the fuller they get, so a capped count
    flatters them."""
    say(
        f"Quix Streams: survey NPS/CSAT/CES per channel, {windows} 5m/1h/24h windows, {surveys:,} events"
    )
    figures = run_child(
        "bench.stages.quix_survey",
        [
            *("--bootstrap", run.bootstrap),
            *("--topic", f"{run.prefix}surveys"),
            *("--group", f"bench-quix-{windows}-{run.tag}"),
            *("--count", str(surveys)),
            *("--windows", windows),
        ],
        timeout=max(120.0, surveys / 300),
        log_path=run.log_dir / f"quix-{windows}.log",
        pin=pin,
    )
    say(
        f"  Quix {figures['events_per_s']:,.0f} survey events/s, {figures['cpu_us_per_event']:.0f} µs CPU/event"
    )
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
