"""What the stages of one run share: options, broker, topic prefix, logs, the prefilled records,
and how to make a worker process of this run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import BenchRecord
from bench.worker import WorkerProcess, worker_env
from pipeline.kafka.topics import SOURCE_TOPICS

__all__ = ["Run"]


@dataclass
class Run:
    """One benchmark run's shared state (see ``bench/__init__.py`` for the stages)."""

    args: argparse.Namespace
    bootstrap: str
    prefix: str
    tag: str
    log_dir: Path
    broker_pid: int | None
    records: list[BenchRecord] = field(default_factory=list)
    partitioning: dict[str, Any] = field(default_factory=dict)
    """Records per source partition of the prefill (see :func:`bench.data.partition_distribution`)."""

    @property
    def partitions(self) -> int:
        return self.args.partitions

    @property
    def source_partitions(self) -> int:
        """Partitions a group of workers shares: the unit of scale-out."""
        return self.partitions * len(SOURCE_TOPICS)

    def worker(
        self, app: str, log: str, prefix: str | None = None, pin: int | None = None
    ) -> WorkerProcess:
        """A worker of app id ``bench-<tag><app>`` (its consumer group), not yet started;
        ``pin``: run it under ``taskset -c pin``."""
        settings = {"source_partitions": str(self.partitions)}
        if self.args.flush_interval is not None:
            settings["flush_interval"] = str(self.args.flush_interval)
        env = worker_env(
            bootstrap=self.bootstrap,
            prefix=prefix or self.prefix,
            app_id=f"bench-{self.tag}{app}",
            **settings,
        )
        return WorkerProcess(env, self.log_dir / f"{log}.log", pin=pin)

    def drain_timeout(self, records: int) -> float:
        return max(120.0, records / 1000)
