"""The whole-shop view every worker keeps: checkpoints from ALL partitions, folded once each.

Each worker tails the checkpoint topic (every partition, no consumer group) and applies every
checkpoint exactly once (:class:`~pipeline.checkpoint.SequenceLedger`). So each worker holds the
same whole-shop aggregates and any single scrape target exports complete numbers: no metric is
ever one worker's partitions only, and there is no rebalance gap in the exported series.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal

from pipeline.checkpoint import Checkpoint, SequenceLedger
from pipeline.delta import Labels, Series, Value
from pipeline.windows import WindowSpec, WindowStore


class View:
    def __init__(self, specs: Sequence[WindowSpec]) -> None:
        self.specs = tuple(specs)
        self.store = WindowStore(self.specs)
        self.totals: defaultdict[Series, int | Decimal] = defaultdict(int)
        self.ledger = SequenceLedger()
        self.applied = 0
        self.last_written_at = 0.0

    def apply(self, checkpoint: Checkpoint) -> bool:
        """Fold one checkpoint in; False if it was already applied."""
        if not self.ledger.admit(checkpoint):
            return False
        for (series, bucket), value in checkpoint.delta.windowed.items():
            self.store.add(series, bucket, value)
        for series, amount in checkpoint.delta.totals.items():
            self.totals[series] += amount
        self.applied += 1
        self.last_written_at = max(self.last_written_at, checkpoint.written_at)
        return True

    def labels_of(self, name: str) -> list[Labels]:
        """Label tuples of every windowed series called ``name``."""
        return sorted(
            labels for (series_name, labels) in self.store.series() if series_name == name
        )

    def window_value(self, name: str, labels: Labels, spec: WindowSpec, now: float) -> Value | None:
        return self.store.total((name, labels), spec, now)

    def totals_named(self, name: str) -> Iterable[tuple[Labels, int | Decimal]]:
        return sorted(
            (labels, amount)
            for (series_name, labels), amount in self.totals.items()
            if series_name == name
        )

    def expire(self, now: float) -> None:
        self.store.expire(now)
