"""The pipeline drain: real worker processes (one, or a consumer group) count the prefilled
topics from the beginning, watched from outside through /metrics; plus what the same workers
cost per scrape and how their RSS grew with the events counted.

Each returns a plain dict of figures (seconds, events/s, ...) for the report. Time is measured
with ``time.perf_counter`` inside a process and ``time.time`` across processes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.harness import MB, CpuMeter
from bench.profile import Profiler
from bench.worker import MetricsSnapshot, WorkerProcess

__all__ = [
    "DrainSample",
    "Progress",
    "counted_events",
    "counted_records",
    "drain_pipeline",
    "rss_by_progress",
    "scrape_cost",
]


Progress = Callable[[MetricsSnapshot], float]
"""What a drain counts on /metrics: valid events, or every record (events + rejected)."""


def counted_events(snapshot: MetricsSnapshot) -> float:
    return snapshot.events


def counted_records(snapshot: MetricsSnapshot) -> float:
    """Valid events and dead-lettered records: everything a worker has consumed."""
    return snapshot.events + snapshot.rejected


@dataclass(frozen=True, slots=True)
class DrainSample:
    seconds: float
    """Since the workers were started."""
    events: float
    rss: int
    """Sum over the workers."""
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class _GroupPoll:
    """One scrape of every worker: the slowest view decides how far the group has got."""

    progress: float
    slowest: MetricsSnapshot
    assigned: tuple[float, ...]

    def balanced(self, partitions: int) -> bool:
        """Every worker owns partitions and together they own all of them."""
        return all(self.assigned) and sum(self.assigned) >= partitions


def _poll_group(workers: Sequence[WorkerProcess], progress: Progress) -> _GroupPoll | None:
    snapshots = [worker.snapshot() for worker in workers]
    if any(snapshot is None for snapshot in snapshots):
        return None
    answered = [snapshot for snapshot in snapshots if snapshot is not None]
    slowest = min(answered, key=progress)
    return _GroupPoll(progress(slowest), slowest, tuple(s.assigned_partitions for s in answered))


@dataclass(frozen=True, slots=True)
class _Mark:
    at: float
    """``time.perf_counter()`` of the poll."""
    progress: float
    cpu: float
    """CPU seconds of all workers so far."""


class _Drain:
    """The marks of one drain, filled poll by poll (see :func:`drain_pipeline`)."""

    def __init__(self, workers: Sequence[WorkerProcess], expected: int, partitions: int) -> None:
        self.workers, self.expected, self.partitions = workers, expected, partitions
        self.spawn = time.perf_counter()
        self.samples: list[DrainSample] = []
        self.scrape_seconds: list[float] = []
        self.assigned: _Mark | None = None
        self.first: _Mark | None = None
        self.start: _Mark | None = None
        self.done: _Mark | None = None
        self.assignments: list[tuple[float, ...]] = []
        self.last: _GroupPoll | None = None

    def cpu(self) -> float:
        return sum(worker.cpu_seconds() for worker in self.workers)

    def record(self, state: _GroupPoll, now: float) -> _Mark:
        self.last = state
        mark = _Mark(now, state.progress, self.cpu())
        rss = sum(worker.rss() for worker in self.workers)
        self.samples.append(DrainSample(now - self.spawn, state.progress, rss, mark.cpu))
        balanced = state.balanced(self.partitions)
        if self.assigned is None and balanced:
            self.assigned = mark
        if self.first is None and state.progress > 0:
            self.first = mark
        if self.start is None and balanced and state.progress > 0:
            self.start = mark
        if self.start is not None and state.assigned not in self.assignments[-1:]:
            self.assignments.append(state.assigned)
        if state.progress >= self.expected:
            self.done = mark
        return mark

    def timeout_error(self, timeout: float) -> TimeoutError:
        counted = self.last.progress if self.last else 0
        tails = "\n".join(worker.log_tail() for worker in self.workers)
        return TimeoutError(
            f"pipeline counted {counted:.0f} of {self.expected} in {timeout:.0f} s\n{tails}"
        )


def drain_pipeline(
    workers: Sequence[WorkerProcess],
    expected: int,
    *,
    partitions: int,
    progress: Progress = counted_events,
    poll: float = 0.2,
    timeout: float = 300.0,
    profiler: Profiler | None = None,
    broker_pid: int | None = None,
) -> tuple[dict[str, Any], list[DrainSample]]:
    """Start ``workers`` (one consumer group) on prefilled topics; poll until ``expected`` counted.

    Every worker's view holds the whole shop, so the group has got as far as its slowest view.
    Marks: *assigned* = the workers together report all ``partitions`` source partitions
    assigned, each some (group join and state recovery done); *first* = the first poll with
    ``progress > 0``; *start* = the first poll that is both; *done* = the first poll with
    ``progress >= expected``. The headline rate is (expected - progress at *start*) /
    (done - start): startup, group join, a rebalance as later workers join and the first
    checkpoint interval are excluded. Rates from process start and from *assigned* are reported
    too, and how busy the machine's CPUs were (workers, broker, everything else) in the measured
    interval: on a shared machine, other load shows there.
    """
    machine = CpuMeter(broker_pid)
    drain = _Drain(workers, expected, partitions)
    for worker in workers:
        worker.start(ready_timeout=None)
    next_poll = drain.spawn
    try:
        while drain.done is None:
            next_poll += poll
            asked = time.perf_counter()
            state = _poll_group(workers, progress)
            now = time.perf_counter()
            if now - drain.spawn > timeout:
                raise drain.timeout_error(timeout)
            if state is not None:
                drain.scrape_seconds.append(now - asked)
                mark = drain.record(state, now)
                if profiler is not None and mark is drain.assigned:
                    profiler.start(workers[0].pid)
                if mark is drain.start:
                    machine.start()
                if mark is drain.done and drain.start is not None:
                    machine.stop(mark.cpu - drain.start.cpu)
            time.sleep(max(0.0, next_poll - time.perf_counter()))
    finally:
        if profiler is not None:
            profiler.stop()
    return _drain_figures(drain, poll) | machine.figures, drain.samples


def _drain_figures(drain: _Drain, poll: float) -> dict[str, Any]:
    """Rates and CPU of a finished drain (see :func:`drain_pipeline` for the marks)."""
    done, last = drain.done, drain.last
    assert done is not None and drain.first is not None and last is not None
    start = drain.start or drain.first  # a group that never balanced: from the first count
    assigned = drain.assigned or drain.first  # the gauge was missed between two polls
    # at least one poll: a tiny run can be counted in the very poll it was assigned in
    from_assigned = max(done.at - assigned.at, poll)
    expected = drain.expected
    steady_events = expected - start.progress
    steady_seconds = done.at - start.at
    steady_measured = steady_events >= 0.25 * expected and steady_seconds > 0
    if steady_measured:
        headline = steady_events / steady_seconds
        cpu_from, cpu_events, cpu_wall = start, steady_events, steady_seconds
    else:  # everything arrived in the first checkpoints (tiny runs): from assignment instead
        headline = expected / from_assigned
        cpu_from, cpu_events, cpu_wall = assigned, expected, from_assigned
    # a tiny run can be assigned and done within one poll, below the CPU clock's 10 ms tick:
    # then count the worker's CPU since it started (start-up included; smoke runs only)
    cpu_seconds = done.cpu - cpu_from.cpu if done.cpu > cpu_from.cpu else done.cpu
    return {
        "workers": len(drain.workers),
        "events": expected,
        "events_counted": last.slowest.events,
        "rejected": last.slowest.rejected,
        "duplicates": last.slowest.duplicates,
        "events_per_s": headline,
        "steady_measured": steady_measured,
        "seconds_steady": steady_seconds,
        "events_at_first_count": start.progress,
        "events_per_s_from_assigned": expected / from_assigned,
        "events_per_s_from_start": expected / (done.at - drain.spawn),
        "seconds_from_start": done.at - drain.spawn,
        "startup_seconds": assigned.at - drain.spawn,
        "first_count_seconds": drain.first.at - drain.spawn,
        "assigned_partitions": list(last.assigned),
        "assignment_changes": max(0, len(drain.assignments) - 1),
        "worker_cpu_seconds": cpu_seconds,
        "worker_cpu_us_per_event": cpu_seconds / cpu_events * 1e6,
        "worker_cpu_utilisation": cpu_seconds / cpu_wall if cpu_wall > 0 else 0.0,
        "poll_seconds": poll,
        "scrape_ms_median": statistics.median(drain.scrape_seconds) * 1000,
    }


IDLE_FOR = 8.0
"""Seconds of an idle worker that mean it is done: longer than the quiet period (5 s) its cart
decisions wait for after the last event."""


def scrape_cost(worker: WorkerProcess, scrapes: int = 20, settle: float = 60.0) -> dict[str, float]:
    """Worker CPU and wall time per /metrics scrape, measured back to back on the idle worker.

    The latency stage polls every 100 ms; this says how much of the worker that costs. First
    waits (up to ``settle`` s, reported as ``settle_seconds``) for the worker to go idle: after
    the last event it decides every cart of the history (quiet period, settled orders), ~80 µs
    each with its signal: ~15 s of CPU after 1M events, which the steady-state latency stage
    that follows must not measure.
    """
    began = time.perf_counter()
    idle_since = None
    while True:
        sample_began, sample_cpu = time.perf_counter(), worker.cpu_seconds()
        time.sleep(0.5)
        now = time.perf_counter()
        idle_per_second = (worker.cpu_seconds() - sample_cpu) / (now - sample_began)
        if idle_per_second >= 0.1:
            idle_since = None
        elif idle_since is None:
            idle_since = sample_began
        if (idle_since is not None and now - idle_since >= IDLE_FOR) or now - began > settle:
            break
    settled = (idle_since if idle_since is not None else time.perf_counter()) - began
    began, cpu = time.perf_counter(), worker.cpu_seconds()
    for _ in range(scrapes):
        size = len(worker.metrics_text())
    wall = time.perf_counter() - began
    busy = worker.cpu_seconds() - cpu - idle_per_second * wall
    return {
        "scrape_wall_ms": wall / scrapes * 1000,
        "scrape_cpu_ms": max(0.0, busy) / scrapes * 1000,
        "scrape_bytes": size,
        "idle_cpu_utilisation": idle_per_second,
        "settle_seconds": settled,
    }


def rss_by_progress(
    samples: Sequence[DrainSample], expected: int, fractions: Sequence[float] = (0.25, 0.5, 0.75, 1)
) -> list[dict[str, float]]:
    """RSS at the first sample that had counted each fraction of ``expected`` events."""
    points = []
    for fraction in fractions:
        target = fraction * expected
        sample = next((s for s in samples if s.events >= target), samples[-1])
        points.append(
            {"fraction": fraction, "events": sample.events, "rss_mb": round(sample.rss / MB, 1)}
        )
    return points
