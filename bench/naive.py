"""The naive baseline: a plain Faust app doing the contract validation per event, nothing else.

One agent over the four source topics calls ``schemas.decode_record`` on every record, the same
work as the raw ceiling, and counts. It is what "just write a Faust agent" gives on this broker;
the gap to the raw ceiling is Faust's per-record machinery (research/perf.md: ~200 µs/record).

Faust owns its event loop, signal handlers and logging, so it runs in a child process::

    python -m bench.naive --bootstrap HOST:PORT --prefix P. --count 30000 --app-id ID

which prints one JSON line ``{"events", "rejected", "first_event_at", "done_at"}`` (epoch
seconds) once ``--count`` records were validated, then exits at once. :func:`run_naive` starts
it, waits with a timeout and turns the line into events/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from pipeline.kafka.topics import SOURCE_TOPICS

__all__ = ["main", "run_naive"]


def build_app(
    *, bootstrap: str, prefix: str, app_id: str, count: int, datadir: str, out: Path
) -> object:
    """The Faust app: one agent, ``count`` validated records, then the result line and exit."""
    import faust

    from schemas import EventRejected, decode_record

    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        table_standby_replicas=0,
        broker_session_timeout=1.0,
        broker_heartbeat_interval=0.3,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    short = {prefix + name: name for name in SOURCE_TOPICS}
    topic = app.topic(*short, key_serializer="raw", value_serializer="raw")
    state = {"events": 0, "rejected": 0, "first_event_at": 0.0}

    @app.agent(topic)
    async def validate(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            try:
                decode_record(short[message.topic], message.key, message.value, now=time.time())
            except EventRejected:
                state["rejected"] += 1
            state["events"] += 1
            if state["events"] == 1:
                state["first_event_at"] = time.time()
            if state["events"] >= count:
                result = {**state, "done_at": time.time()}
                out.write_bytes(orjson.dumps(result) + b"\n")
                sys.stdout.flush()
                os._exit(0)  # the measurement is taken; Faust's shutdown is not part of it

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the result line goes")
    args = parser.parse_args(argv)
    import faust

    with tempfile.TemporaryDirectory(prefix="bench-faust-") as datadir:
        app = build_app(
            bootstrap=args.bootstrap,
            prefix=args.prefix,
            app_id=args.app_id,
            count=args.count,
            datadir=datadir,
            out=args.out,
        )
        worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
        worker.execute_from_commandline()
    return 1  # pragma: no cover - the agent exits the process


def run_naive(
    *, bootstrap: str, prefix: str, app_id: str, count: int, timeout: float, log_path: Path
) -> dict[str, float]:
    """Run the Faust baseline in a child process until ``count`` records were validated.

    Returns events, events/s (first to last record), startup seconds (process start to first
    record) and the child's wall time; raises on timeout or failure.
    """
    out = log_path.with_suffix(".json")
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.naive",
        "--bootstrap",
        bootstrap,
        "--prefix",
        prefix,
        "--app-id",
        app_id,
        "--count",
        str(count),
        "--out",
        str(out),
    ]
    started = time.time()
    with log_path.open("ab") as log:
        try:
            proc = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"the Faust baseline did not validate {count} records within {timeout:.0f} s "
                f"(log {log_path})"
            ) from None
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"the Faust baseline failed (exit {proc.returncode}):\n{tail}")
    result = orjson.loads(out.read_bytes())
    events = int(result["events"])
    seconds = float(result["done_at"]) - float(result["first_event_at"])
    return {
        "events": events,
        "rejected": int(result["rejected"]),
        "seconds": seconds,
        "events_per_s": (events - 1) / seconds if seconds > 0 else 0.0,
        "startup_seconds": float(result["first_event_at"]) - started,
        "wall_seconds": time.time() - started,
    }


if __name__ == "__main__":
    raise SystemExit(main())
