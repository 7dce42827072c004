"""What a stage measures besides its own counts: where the machine's CPU went while it ran.

On a shared 2-core machine a rate means little without the load beside it, so every timed
stage reports the busy cores of the machine, the broker, the harness and everything else.
"""

from __future__ import annotations

import time

import psutil

__all__ = ["MB", "CpuMeter", "process_cpu_seconds"]

MB = 1024 * 1024


def process_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of one process (children not included)."""
    times = process.cpu_times()
    return times.user + times.system


class CpuMeter:
    """Busy CPUs of the machine, the broker and this process between start() and stop()."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker = psutil.Process(broker_pid) if broker_pid else None
        self.me = psutil.Process()
        self.figures: dict[str, float] = {}

    def _read(self) -> tuple[float, float, float, float, float]:
        total = psutil.cpu_times()
        steal = getattr(total, "steal", 0.0)
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0) - steal
        broker = sum(self.broker.cpu_times()[:2]) if self.broker else 0.0
        return time.perf_counter(), busy, broker, sum(self.me.cpu_times()[:2]), steal

    def start(self) -> None:
        self.began = self._read()

    def stop(self, worker_cpu: float) -> None:
        end = self._read()
        wall, busy, broker, me, steal = (b - a for a, b in zip(self.began, end, strict=True))
        if wall <= 0:
            return
        self.figures = {
            "machine_busy_cores": busy / wall,
            "broker_busy_cores": broker / wall,
            "harness_busy_cores": me / wall,
            "other_busy_cores": max(0.0, busy - broker - me - worker_cpu) / wall,
            "steal_cores": steal / wall,  # CPU the hypervisor gave to other guests
        }
