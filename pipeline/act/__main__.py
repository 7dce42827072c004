"""`python -m pipeline.act` (to be wired as `cxpipe act`): run the signal-acting Faust worker.

Configuration: the pipeline's `CX_*` settings (broker, topic prefix, app id, session timeout,
log level), the actions file named by `--actions` or `CX_ACTIONS`, and `CX_ACT_METRICS_PORT`
(default 9465) / `CX_ACT_STATE_DIR` (Faust's data dir, default a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

from pipeline.act.config import ActionsError, load_actions
from pipeline.act.metrics import ActMetrics
from pipeline.kafka.topics import create_missing_topics
from pipeline.settings import Settings
from schemas.signals import DEAD_LETTER_TOPIC, TOPIC

DEFAULT_METRICS_PORT = 9465


async def ensure_signal_topics(settings: Settings) -> None:
    """Create `cx.signals` and its dead letter if missing, like the worker's source topics."""
    names = [settings.topic(TOPIC), settings.topic(DEAD_LETTER_TOPIC)]
    await create_missing_topics(settings, names, settings.source_partitions)


def run_act(
    settings: Settings,
    actions_path: Path,
    *,
    metrics_port: int = DEFAULT_METRICS_PORT,
    state_dir: Path | None = None,
) -> int:
    """Validate the actions file, then run the Faust worker until a signal stops it."""
    import faust

    from pipeline.act.app import build_app

    try:
        actions = load_actions(actions_path)
    except ActionsError as exc:
        print(f"cxpipe act: {exc}", file=sys.stderr)
        return 2
    if not settings.bootstrap_servers:
        print("cxpipe act: no broker; set CX_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    asyncio.run(ensure_signal_topics(settings))
    metrics = ActMetrics()
    metrics.serve(settings.metrics_host, metrics_port)
    datadir = state_dir or Path(tempfile.mkdtemp(prefix="cx-act-"))
    app = build_app(settings, actions, metrics, str(datadir))
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    # faust.Worker leaves the root logger at DEBUG (research/perf.md): put the level back
    logging.getLogger().setLevel(settings.log_level.upper())
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxpipe act", description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=Path, default=os.environ.get("CX_ACTIONS"))
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers.")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("CX_ACT_METRICS_PORT", DEFAULT_METRICS_PORT)),
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=os.environ.get("CX_ACT_STATE_DIR"),
        help="Faust data dir.",
    )
    args = parser.parse_args(argv)
    if args.actions is None:
        parser.error("no actions file: pass --actions or set CX_ACTIONS")
    overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    return run_act(
        Settings(**overrides),
        args.actions,
        metrics_port=args.metrics_port,
        state_dir=args.state_dir,
    )


if __name__ == "__main__":
    raise SystemExit(main())
