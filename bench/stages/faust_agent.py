"""The Faust baselines: one agent over the four source topics calling ``schemas.decode_record``
on every record, as a plain Faust user would write it (untuned) and as a competent one tunes it.

Variants (``--variant``):

* ``untuned``: Faust's defaults, ``async for event in stream.events()``. What "just write a
  Faust agent" gives.
* ``tuned``: what research/perf.md measured to help, all of it: uvloop (``mode.loop.use``
  before the worker), ``broker_max_poll_records=5000``, ``consumer_max_fetch_size`` 4 MiB,
  iterating ``stream.take_events(5000, within=0.05)``, the root logger back at WARNING
  (``faust.Worker`` leaves it at DEBUG), and the process pinned to one core (the parent runs it
  under ``taskset``: Faust runs aiokafka in a second thread, and unpinned the GIL ping-pongs).
* ``tuned_table``: ``tuned`` plus one table write per record (a per-topic counter, ``+= 1``),
  with ``producer_linger=0.05`` and ``producer_max_batch_size`` 1 MiB for the changelog; a table
  write needs the current event, so it iterates event by event.

Faust owns its event loop, signal handlers and logging, so it runs in a child process::

    python -m bench.stages.faust_agent --variant tuned --bootstrap HOST:PORT --prefix P. \
        --count 30000 --app-id ID --partitions 8 --out FILE

which writes one JSON object (see :mod:`bench.harness.child`) once ``--count`` records were
validated, then exits at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import orjson

from bench.harness import run_child, say
from bench.harness.context import Run
from pipeline.kafka.topics import SOURCE_TOPICS

__all__ = ["VARIANTS", "faust_baseline", "main"]

Variant = Literal["untuned", "tuned", "tuned_table"]
VARIANTS: tuple[Variant, ...] = ("untuned", "tuned", "tuned_table")
MIB = 1024 * 1024
TAKE = 5000
WITHIN = 0.05


def _settings(variant: Variant) -> dict[str, Any]:
    """The app settings of ``variant`` beyond those every variant shares."""
    if variant == "untuned":
        return {}
    tuned = {"broker_max_poll_records": TAKE, "consumer_max_fetch_size": 4 * MIB}
    if variant == "tuned_table":
        tuned |= {"producer_linger": WITHIN, "producer_max_batch_size": MIB}
    return tuned


class _Tally:
    """Counts records, stamps the first and the last, writes the result and exits."""

    def __init__(self, count: int, out: Path) -> None:
        self.count, self.out = count, out
        self.state: dict[str, float] = {"events": 0, "rejected": 0}

    def add(self, rejected: bool) -> None:
        state = self.state
        if state["events"] == 0:
            state.update(first_event_at=time.time(), cpu_at_first_event=time.process_time())
        state["events"] += 1
        state["rejected"] += rejected
        if state["events"] >= self.count:
            done = {"done_at": time.time(), "cpu_at_done": time.process_time()}
            self.out.write_bytes(orjson.dumps(self.state | done) + b"\n")
            os._exit(0)  # the measurement is taken; Faust's shutdown is not part of it


def build_app(args: argparse.Namespace, datadir: str) -> object:
    """The Faust app of ``args.variant``: one agent, ``args.count`` validated records."""
    import faust

    from schemas import EventRejected, decode_record

    variant: Variant = args.variant
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=variant == "tuned_table",  # the table's changelog topic
        topic_partitions=args.partitions,
        table_standby_replicas=0,
        broker_session_timeout=1.0,
        broker_heartbeat_interval=0.3,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        **_settings(variant),
    )
    short = {args.prefix + name: name for name in SOURCE_TOPICS}
    topic = app.topic(*short, key_serializer="raw", value_serializer="raw")
    tally = _Tally(args.count, args.out)
    table = (
        app.Table("per_topic", default=int, partitions=args.partitions)
        if variant == "tuned_table"
        else None
    )

    def validate(message: Any) -> bool:
        try:
            decode_record(short[message.topic], message.key, message.value, now=time.time())
        except EventRejected:
            return True
        return False

    @app.agent(topic)
    async def agent(stream):  # type: ignore[no-untyped-def]
        if variant != "untuned":
            logging.getLogger().setLevel(logging.WARNING)
        if variant == "tuned":
            async for events in stream.take_events(TAKE, within=WITHIN):
                for event in events:
                    tally.add(validate(event.message))
            return
        async for event in stream.events():
            rejected = validate(event.message)
            if table is not None:
                table[short[event.message.topic]] += 1
            tally.add(rejected)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages.faust_agent", description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the result goes")
    args = parser.parse_args(argv)
    if args.variant != "untuned":
        import mode.loop

        mode.loop.use("uvloop")
    import faust

    with tempfile.TemporaryDirectory(prefix="bench-faust-") as datadir:
        app = build_app(args, datadir)
        worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
        worker.execute_from_commandline()
    return 1  # pragma: no cover - the agent exits the process


def faust_baseline(run: Run, variant: Variant, pin: int | None) -> dict[str, Any]:
    """Run one Faust variant on the first ``--naive-events`` records; its rate is per record
    and steady, so the full-N time is extrapolated."""
    count = min(run.args.naive_events, run.args.events)
    pin = None if variant == "untuned" else pin
    say(
        f"Faust {variant}: one agent validating {count:,} events"
        + (f", pinned to CPU {pin}" if pin is not None else "")
    )
    figures = run_child(
        "bench.stages.faust_agent",
        [
            *("--variant", variant),
            *("--bootstrap", run.bootstrap),
            *("--prefix", run.prefix),
            *("--app-id", f"bench-faust-{variant}-{run.tag}"),
            *("--count", str(count)),
            *("--partitions", str(run.partitions)),
        ],
        timeout=max(90.0, count / 500),
        log_path=run.log_dir / f"faust-{variant}.log",
        pin=pin,
    )
    figures["variant"] = variant
    figures["extrapolated_seconds_for_all"] = run.args.events / figures["events_per_s"]
    say(
        f"  Faust {variant} {figures['events_per_s']:,.0f} events/s, {figures['cpu_us_per_event']:.0f} µs CPU/event"
    )
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
