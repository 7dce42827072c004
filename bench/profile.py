"""Optional CPU profile of the worker during the drain, with py-spy (``pip install py-spy``).

``py-spy record --format raw --function --nonblocking`` samples the worker without pausing it and
writes collapsed stacks (one ``frame;frame;... count`` line per distinct stack, loadable in
speedscope or flamegraph.pl). :func:`summarise` turns them into the hot spots: time per asyncio
task (``Worker._run_ingest``, ``Worker._run_view``, aiokafka's fetcher, ...) and per call inside
it, self time per function, inclusive time per function (without the trunk every sample shares)
and self time per source file. Idle time (the event loop
waiting in ``epoll``) is not sampled, so percentages are of the busy time; ``busy`` is the
share of wall time the worker was on CPU according to the sample count.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "find_py_spy", "summarise"]

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def find_py_spy() -> str | None:
    """py-spy next to this interpreter (a venv install) or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


class Profiler:
    """Attaches py-spy to a pid on :meth:`start`, detaches and summarises on :meth:`stop`."""

    def __init__(self, output: Path, rate: int = 100) -> None:
        executable = find_py_spy()
        if executable is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.executable = executable
        self.output = output
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = self.stopped = 0.0
        self.summary: dict[str, object] | None = None

    def start(self, pid: int) -> None:
        self.output.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                self.executable,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--rate",
                str(self.rate),
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.started = time.perf_counter()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.stopped = time.perf_counter()
        self.proc.send_signal(signal.SIGINT)
        try:
            _, stderr = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
        self.proc = None
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {stderr.decode(errors='replace')[-500:]}")
        self.summary = summarise(
            self.output.read_text(), seconds=self.stopped - self.started, rate=self.rate
        )


def _short(frame: str) -> tuple[str, str]:
    """(``function (file)``, file) of a py-spy frame ``function (file:line)``."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, "?"
    file = match["file"]
    return f"{match['function']} ({file})", file


def _task_and_step(names: list[str]) -> tuple[str, str]:
    """The asyncio task (coroutine or callback the loop ran) and the call it was in."""
    run = max((i for i, name in enumerate(names) if name.startswith("Handle._run ")), default=-1)
    rest = names[run + 1 :] or ["(event loop)"]
    task = rest[0].split(" (", 1)[0]
    step = rest[1].split(" (", 1)[0] if len(rest) > 1 else "(self)"
    return task, step


def summarise(raw: str, *, seconds: float, rate: int, top: int = 15) -> dict[str, object]:
    """Hot spots of collapsed stacks: self and inclusive share per function, self per file."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    per_file: Counter[str] = Counter()
    per_task: Counter[str] = Counter()
    per_step: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        if frames and frames[0][0].startswith("process ") and "(" not in frames[0][0]:
            frames = frames[1:]  # a "process <pid>" / thread header, not a frame
        if not frames:
            continue
        total += count
        leaf, leaf_file = frames[-1]
        self_time[leaf] += count
        per_file[leaf_file] += count
        names = [name for name, _ in frames]
        for name in set(names):
            inclusive[name] += count
        task, step = _task_and_step(names)
        per_task[task] += count
        per_step[f"{task} > {step}"] += count

    def share(counter: Counter[str]) -> list[dict[str, object]]:
        return [
            {"name": name, "percent": round(100 * count / total, 1)}
            for name, count in counter.most_common(top)
        ]

    trunk = {name for name, count in inclusive.items() if count >= 0.9 * total}
    for name in trunk:  # interpreter, CLI and event-loop frames under everything
        del inclusive[name]
    return {
        "samples": total,
        "seconds": round(seconds, 2),
        "rate_hz": rate,
        "busy": round(total / (seconds * rate), 3) if seconds > 0 else 0.0,
        "by_task": share(per_task) if total else [],
        "by_task_step": share(per_step) if total else [],
        "self": share(self_time) if total else [],
        "inclusive": share(inclusive) if total else [],
        "self_by_file": share(per_file) if total else [],
    }
