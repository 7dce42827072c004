"""Optional CPU profile of the worker during the drain, with py-spy (``pip install py-spy``).

``py-spy record --format raw --function --nonblocking`` samples the worker without pausing it and
writes collapsed stacks (one ``frame;frame;... count`` line per distinct stack, loadable in
speedscope or flamegraph.pl). :func:`summarise` turns them into the hot spots: self time per
function, inclusive time per function and self time per source file. Idle time (the event loop
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


def summarise(raw: str, *, seconds: float, rate: int, top: int = 15) -> dict[str, object]:
    """Hot spots of collapsed stacks: self and inclusive share per function, self per file."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    per_file: Counter[str] = Counter()
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
        for name in {name for name, _ in frames}:
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[dict[str, object]]:
        return [
            {"name": name, "percent": round(100 * count / total, 1)}
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "seconds": round(seconds, 2),
        "rate_hz": rate,
        "busy": round(total / (seconds * rate), 3) if seconds > 0 else 0.0,
        "self": share(self_time) if total else [],
        "inclusive": share(inclusive) if total else [],
        "self_by_file": share(per_file) if total else [],
    }
