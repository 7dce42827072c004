"""The plumbing every benchmark stage shares, once: the broker, bare Kafka reads, CPU meters,
child processes for framework baselines, progress output.

Stages (``bench/stages/``) import from here and from ``bench.data`` / ``bench.worker``; nothing
here imports a stage.
"""

from bench.harness.broker import broker
from bench.harness.child import BaselineFailed, run_child
from bench.harness.console import say
from bench.harness.heap import frozen_heap
from bench.harness.meter import MB, CpuMeter, process_cpu_seconds
from bench.harness.reader import read_log, reader

__all__ = [
    "MB",
    "BaselineFailed",
    "CpuMeter",
    "broker",
    "frozen_heap",
    "process_cpu_seconds",
    "read_log",
    "reader",
    "run_child",
    "say",
]
