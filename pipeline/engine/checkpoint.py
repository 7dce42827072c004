"""The checkpoint record: one per source partition per flush, the unit of exactly-once.

Tansu has no Kafka transactions, so atomicity comes from putting everything one flush produced for
a partition into ONE record: the offset range it covers, the metric delta, the ids it accepted,
the entity-state changes and the still-pending future observations. Each partition's checkpoints
carry a sequence number; stage 1 resumes a partition at the last checkpoint's ``next_offset`` and
every view applies each sequence number once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.aggregates.delta import Delta
from pipeline.engine.dedupe import ID_HASH, LEGACY_ID_HASH

FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
"""Version 2 kept the entity state inside the second line."""


@dataclass
class Checkpoint:
    topic: str
    """Full source topic name."""
    partition: int
    seq: int
    """1, 2, 3, … per partition, continued by whichever worker owns the partition."""
    next_offset: int
    """First source offset NOT covered (timer-only checkpoints repeat the previous value)."""
    written_at: float
    delta: Delta = field(default_factory=Delta)
    ids: dict[str, str] = field(default_factory=dict)
    id_hash: str = ID_HASH
    """Which hash ``ids`` hold; checkpoints from before the tag hold :data:`LEGACY_ID_HASH`."""
    state: dict[str, Any] = field(default_factory=dict)
    pending: list[list[Any]] = field(default_factory=list)
    link_offset: int | None = None
    """Next offset of the partition's cart-orders link topic (carts partitions only)."""
    repartition_offset: int | None = None
    """Next offset of the partition's repartition topic (forwards of misplaced records); in the
    first line, because the orders-settled barrier of every worker waits on it."""
    held: list[list[Any]] = field(default_factory=list)
    """Events waiting for their topic to settle (engine/holdback): all of them, unless
    ``held_delta`` is set (checkpoints written before deltas carry all of them every time)."""
    held_delta: tuple[list[list[Any]], list[int]] | None = None
    """Not full: (events held since the previous checkpoint, sequence numbers released since)."""
    origins: dict[str, int] = field(default_factory=dict)
    """Origin partition -> highest origin offset of a forward applied (see engine/placement)."""
    full: bool = False
    """``state`` holds every live entity, not just changes: recovery can start here."""
    state_wire: bytes | None = field(default=None, repr=False)
    """The state line, not parsed until :meth:`entity_state` asks for it."""

    @property
    def source(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def key(self) -> bytes:
        return f"{self.topic}:{self.partition}".encode()

    def entity_state(self) -> dict[str, Any]:
        """The entity-state changes, parsed on first use: recovery never parses the (large)
        state of checkpoints that a later full checkpoint supersedes."""
        if self.state_wire is not None:
            self.state = orjson.loads(self.state_wire)
            self.state_wire = None
        return self.state

    def encode(self) -> bytes:
        """Three JSON documents on three lines: what every view needs, then the ids, pending
        observations and link offset, then the entity state.

        Views decode the first line only; the rest is parsed by nobody but a worker taking the
        partition over, and the state only from the last full checkpoint on. orjson never emits
        a raw newline.
        """
        head = {
            "v": FORMAT_VERSION,
            "topic": self.topic,
            "partition": self.partition,
            "seq": self.seq,
            "next": self.next_offset,
            "at": self.written_at,
            "delta": self.delta.to_wire(),
            "full": self.full,
        }
        if self.repartition_offset is not None:
            head["rp"] = self.repartition_offset
        tail = {
            "ids": self.ids,
            "idh": self.id_hash,
            "pending": self.pending,
            "links": self.link_offset,
        }
        if self.origins:
            tail["origins"] = self.origins
        if self.held_delta is not None:
            tail["held+"], tail["held-"] = self.held_delta
        elif self.held:
            tail["held"] = self.held
        return b"\n".join(
            (orjson.dumps(head), orjson.dumps(tail), orjson.dumps(self.entity_state()))
        )

    @classmethod
    def decode(cls, data: bytes, *, for_view: bool = False) -> Checkpoint:
        """The whole checkpoint, or with ``for_view`` only what a view applies."""
        head_bytes, _, rest = data.partition(b"\n")
        head = orjson.loads(head_bytes)
        version = head.get("v")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unknown checkpoint format {version!r}")
        checkpoint = cls(
            topic=head["topic"],
            partition=head["partition"],
            seq=head["seq"],
            next_offset=head["next"],
            written_at=head["at"],
            delta=Delta.from_wire(head["delta"]),
            full=head.get("full", False),
            repartition_offset=head.get("rp"),
        )
        if not for_view:
            tail_bytes, _, state_bytes = rest.partition(b"\n")
            tail = orjson.loads(tail_bytes)
            checkpoint.ids = tail["ids"]
            checkpoint.id_hash = tail.get("idh", LEGACY_ID_HASH)
            checkpoint.pending = tail["pending"]
            checkpoint.link_offset = tail["links"]
            checkpoint.origins = tail.get("origins", {})
            checkpoint.held = tail.get("held", [])
            if "held+" in tail:
                checkpoint.held_delta = (tail["held+"], tail["held-"])
            if version == 2:
                checkpoint.state = tail["state"]
            else:
                checkpoint.state_wire = state_bytes
        return checkpoint


class SequenceLedger:
    """The highest checkpoint sequence applied per partition: the exactly-once rule.

    A checkpoint is applied iff its sequence number is above what was applied for its partition.
    Producer retries and re-reads deliver the same numbers again and are skipped; if a worker that
    lost a partition (a paused "zombie") and the partition's new owner both write number N, the
    one first in the log wins everywhere, because every reader applies the same rule in log order.
    """

    def __init__(self) -> None:
        self.applied: dict[tuple[str, int], int] = {}

    def admit(self, checkpoint: Checkpoint) -> bool:
        if checkpoint.seq <= self.applied.get(checkpoint.source, 0):
            return False
        self.applied[checkpoint.source] = checkpoint.seq
        return True
