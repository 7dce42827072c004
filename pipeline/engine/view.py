"""The whole-shop view every worker keeps: checkpoints from ALL partitions, folded once each.

Each worker tails the checkpoint topic (every partition, no consumer group) and applies every
checkpoint exactly once (:class:`~pipeline.engine.checkpoint.SequenceLedger`). So each worker holds the
same whole-shop aggregates and any single scrape target exports complete numbers: no metric is
ever one worker's partitions only, and there is no rebalance gap in the exported series.
"""

from __future__ import annotations

import zlib
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from pipeline.aggregates.delta import Labels, Series, Value, decode_value, encode_value
from pipeline.aggregates.windows import WindowSpec, WindowStore
from pipeline.engine.checkpoint import Checkpoint, SequenceLedger

SNAPSHOT_VERSION = 1
MINUTE = 60

Source = tuple[str, int]
"""A source topic partition: ``("cx.carts", 3)``."""


@dataclass
class RecoveryIndex:
    """Where one source partition's checkpoints lie in the checkpoint log.

    Recovery needs the last full-state checkpoint and every checkpoint of the dedupe horizon;
    remembering the first offset per minute of ``written_at`` finds the latter without keeping
    an entry per checkpoint.
    """

    last_full: int | None = None
    minutes: deque[tuple[int, int]] = field(default_factory=deque)

    def note(self, checkpoint: Checkpoint, offset: int) -> None:
        if checkpoint.full:
            self.last_full = offset
        minute = int(checkpoint.written_at // MINUTE)
        if not self.minutes or minute > self.minutes[-1][0]:
            self.minutes.append((minute, offset))

    def prune(self, oldest_minute: int) -> None:
        while self.minutes and self.minutes[0][0] < oldest_minute:
            self.minutes.popleft()

    def start(self, oldest_minute: int) -> int | None:
        """First log offset to read, or None: no full checkpoint known (a pre-snapshot log)."""
        if self.last_full is None:
            return None
        recent = next((offset for minute, offset in self.minutes if minute >= oldest_minute), None)
        return self.last_full if recent is None else min(recent, self.last_full)


class View:
    def __init__(self, specs: Sequence[WindowSpec], recovery_horizon: float = 0.0) -> None:
        self.specs = tuple(specs)
        self.recovery_horizon = recovery_horizon
        self.store = WindowStore(self.specs)
        self.totals: defaultdict[Series, int | Decimal] = defaultdict(int)
        self.ledger = SequenceLedger()
        self.applied = 0
        self.version = 0
        """Changes whenever the content may have: apply, expire, snapshot load (for caches)."""
        self.last_written_at = 0.0
        self.positions: dict[int, int] = {}
        """Checkpoint-log partition -> next offset to read: where this state stands."""
        self.index: dict[Source, RecoveryIndex] = {}
        self.next_offsets: dict[Source, int] = {}
        """Per source partition, the first offset not yet covered by an applied checkpoint."""
        self.repartition_offsets: dict[Source, int] = {}
        """Per source partition, the first offset of its repartition topic not yet applied."""

    def apply(self, checkpoint: Checkpoint, at: tuple[int, int] | None = None) -> bool:
        """Fold one checkpoint in; False if it was already applied.

        ``at`` is the record's ``(log partition, offset)``: it moves :attr:`positions` and
        indexes the checkpoint for recovery.
        """
        if at is not None:
            self.positions[at[0]] = at[1] + 1
        if not self.ledger.admit(checkpoint):
            return False
        if at is not None:
            self.index.setdefault(checkpoint.source, RecoveryIndex()).note(checkpoint, at[1])
        self.next_offsets[checkpoint.source] = checkpoint.next_offset
        if checkpoint.repartition_offset is not None:
            self.repartition_offsets[checkpoint.source] = checkpoint.repartition_offset
        for (series, bucket), value in checkpoint.delta.windowed.items():
            self.store.add(series, bucket, value)
        for series, amount in checkpoint.delta.totals.items():
            self.totals[series] += amount
        self.applied += 1
        self.version += 1
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
        self.version += 1
        oldest = self._oldest_recovery_minute(now)
        for entry in self.index.values():
            entry.prune(oldest)

    def _oldest_recovery_minute(self, now: float) -> int:
        return int((now - self.recovery_horizon) // MINUTE)

    def recovery_start(self, source: Source, log_partition: int, now: float) -> int:
        """Checkpoint-log offset from which ``source`` (stored in ``log_partition``) recovers.

        A source this view has never seen has nothing before :attr:`positions` (the index
        travels in every snapshot since the log began). What the view has not read yet lies
        after its position, and recovery reads to the end anyway; 0 means the whole log.
        """
        entry = self.index.get(source)
        if entry is None:
            return self.positions.get(log_partition, 0)
        start = entry.start(self._oldest_recovery_minute(now))
        return 0 if start is None else start

    # -- snapshots ----------------------------------------------------------------------------
    def to_snapshot(self) -> bytes:
        """This whole view, so a starting worker reads the log only from :attr:`positions` on."""
        body = {
            "v": SNAPSHOT_VERSION,
            "specs": [[spec.name, spec.length, spec.bucket] for spec in self.specs],
            "store": [
                [size, name, list(labels), keys, [encode_value(v) for v in values]]
                for size, (name, labels), keys, values in self.store.dump()  # type: ignore[misc]
            ],
            "totals": [[n, list(lb), encode_value(v)] for (n, lb), v in self.totals.items() if v],
            "ledger": [[t, p, seq] for (t, p), seq in self.ledger.applied.items()],
            "positions": [[p, offset] for p, offset in self.positions.items()],
            "index": [
                [t, p, entry.last_full, [list(m) for m in entry.minutes]]
                for (t, p), entry in self.index.items()
            ],
            "next": [[t, p, offset] for (t, p), offset in self.next_offsets.items()],
            "rp": [[t, p, offset] for (t, p), offset in self.repartition_offsets.items()],
            "applied": self.applied,
            "at": self.last_written_at,
        }
        return zlib.compress(orjson.dumps(body), 1)

    def load_snapshot(self, data: bytes) -> None:
        """Take the state :meth:`to_snapshot` saved; ValueError (nothing changed) if unusable.

        Only an empty view can load one: the snapshot replaces everything.
        """
        if self.applied:
            raise ValueError("a view snapshot can only be loaded into an empty view")
        try:
            body: dict[str, Any] = orjson.loads(zlib.decompress(data))
        except (zlib.error, orjson.JSONDecodeError) as error:
            raise ValueError(f"unreadable view snapshot: {error}") from None
        if body.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown view snapshot format {body.get('v')!r}")
        if body["specs"] != [[s.name, s.length, s.bucket] for s in self.specs]:
            raise ValueError("view snapshot was taken with other windows")
        fresh = View(self.specs, self.recovery_horizon)
        try:
            fresh._fill(body)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed view snapshot: {error!r}") from None
        fresh.version = self.version + 1
        self.__dict__.update(fresh.__dict__)

    def _fill(self, body: dict[str, Any]) -> None:
        for size, name, labels, keys, values in body["store"]:
            self.store.load(size, (name, tuple(labels)), keys, [decode_value(v) for v in values])
        for name, labels, value in body["totals"]:
            self.totals[(name, tuple(labels))] = decode_value(value)  # type: ignore[assignment]
        self.ledger.applied = {(t, p): seq for t, p, seq in body["ledger"]}
        self.positions = {p: offset for p, offset in body["positions"]}
        for t, p, last_full, minutes in body["index"]:
            self.index[(t, p)] = RecoveryIndex(last_full, deque((m, o) for m, o in minutes))
        self.next_offsets = {(t, p): offset for t, p, offset in body["next"]}
        self.repartition_offsets = {(t, p): offset for t, p, offset in body.get("rp", [])}
        self.applied = body["applied"]
        self.last_written_at = body["at"]
