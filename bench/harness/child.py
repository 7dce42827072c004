"""Run a baseline (Faust, Quix Streams) in a child process and read back its one JSON result.

Frameworks own their event loop, signal handlers and logging, so each baseline runs as
``python -m <module> ... --out FILE``, writes ``{"events", "first_event_at", "done_at", ...}``
(epoch seconds) to FILE once it has handled ``--count`` records, and exits. The parent measures
the child's CPU with psutil while it runs: CPU per event is (CPU at the end - CPU at the first
event) / events, read from the child's own ``cpu_at_first_event`` / ``cpu_at_done``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = ["BaselineFailed", "run_child"]


class BaselineFailed(RuntimeError):
    """The child exited without a result, or ran out of time (its log tail says why)."""


def run_child(
    module: str,
    args: Sequence[str],
    *,
    timeout: float,
    log_path: Path,
    pin: int | None = None,
) -> dict[str, Any]:
    """Run ``python -m module args --out <log>.json`` (under ``taskset -c pin`` if given).

    Returns the child's result plus ``events_per_s`` (first to last event), ``startup_seconds``
    (spawn to first event), ``cpu_us_per_event`` and ``wall_seconds``.
    """
    out = log_path.with_suffix(".json")
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", module, *args, "--out", str(out)]
    if pin is not None:
        command = ["taskset", "-c", str(pin), *command]
    started = time.time()
    with log_path.open("ab") as log:
        try:
            proc = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise BaselineFailed(
                f"{module} did not finish within {timeout:.0f} s (log {log_path})"
            ) from None
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise BaselineFailed(f"{module} failed (exit {proc.returncode}):\n{tail}")
    result = orjson.loads(out.read_bytes())
    events = int(result["events"])
    seconds = float(result["done_at"]) - float(result["first_event_at"])
    cpu = float(result["cpu_at_done"]) - float(result["cpu_at_first_event"])
    return {
        **result,
        "events": events,
        "seconds": seconds,
        "events_per_s": (events - 1) / seconds if seconds > 0 else 0.0,
        "cpu_us_per_event": cpu / max(events - 1, 1) * 1e6,
        "cpu_utilisation": cpu / seconds if seconds > 0 else 0.0,
        "startup_seconds": float(result["first_event_at"]) - started,
        "wall_seconds": time.time() - started,
        "pinned_cpu": pin,
    }
