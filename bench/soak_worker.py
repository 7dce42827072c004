"""The soak's worker process: a real :class:`~pipeline.worker.Worker` on an accelerated clock.

``cxpipe worker`` runs on the wall clock; the soak (bench/soak.py) needs the worker and the
simulator on one compressed clock, and the sizes of the worker's own structures, which only this
process can count: every ``--every`` real seconds it appends :func:`bench.soak.structure_sizes`
(plus the clock and readiness) as one JSON line to ``--sizes``. Settings come from ``CX_*``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import orjson

from bench.soak import AcceleratedClock, structure_sizes
from pipeline.settings import Settings
from pipeline.tools.cli import run_async, setup_logging
from pipeline.worker.service import Worker


async def report_sizes(worker: Worker, clock: AcceleratedClock, path: Path, every: float) -> None:
    with path.open("ab") as out:
        while True:
            line = {"clock": clock(), "view_ready": worker.view_ready, **structure_sizes(worker)}
            out.write(orjson.dumps(line) + b"\n")
            out.flush()
            await asyncio.sleep(every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_worker", description=__doc__)
    parser.add_argument("--clock-start", type=float, required=True)
    parser.add_argument("--clock-origin", type=float, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--sizes", type=Path, required=True, help="JSON lines file to append to")
    parser.add_argument("--every", type=float, default=1.0, help="real seconds between lines")
    args = parser.parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level)
    clock = AcceleratedClock(args.clock_start, args.speed, args.clock_origin)
    worker = Worker(settings, clock=clock)

    async def run() -> None:
        reporter = asyncio.create_task(report_sizes(worker, clock, args.sizes, args.every))
        try:
            await worker.run()
        finally:
            reporter.cancel()

    run_async(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
