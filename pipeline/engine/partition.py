"""Stage 1 for one source partition: route, decode, validate, dedupe, apply domain logic, checkpoint.

Pure and synchronous: the worker feeds it records and ships what it returns, which keeps every
rule here testable without a broker. Offsets make replays harmless: a record at or below the last
checkpointed offset was already accounted for and is skipped before any work.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.aggregates.observations import Observations
from pipeline.domain.handler import DomainHandler
from pipeline.engine.checkpoint import Checkpoint, SequenceLedger
from pipeline.engine.dedupe import ID_HASH, IdStore, id_hash, legacy_id_hash
from pipeline.engine.holdback import Held, HoldBack
from pipeline.engine.links import decode_link
from pipeline.engine.placement import (
    Forward,
    Origin,
    OriginLedger,
    Placement,
    origin_header,
    route,
    split_origin,
)
from pipeline.settings import Settings
from schemas import EventRejected, decode_record
from schemas.fields import MAX_ENTITY_ID_LENGTH

MAX_KEY_BYTES = 4 * MAX_ENTITY_ID_LENGTH
"""A longer record key is no entity id in any encoding (UTF-8 takes at most 4 bytes a character)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record bound for the dead-letter topic, value untouched."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    reason: str
    detail: str
    origin: Origin | None = None
    """Where a forwarded record was produced (its dead letter names that place)."""


UNREADABLE = "unreadable_record"
"""Reject reason of a record the Kafka client cannot parse (e.g. a header key that is not UTF-8):
its bytes never reach us, so its dead letter carries only the reason and where it lies."""


class PartitionProcessor:
    def __init__(
        self,
        *,
        topic: str,
        topic_name: str,
        partition: int,
        handler: DomainHandler,
        settings: Settings,
        placement: Placement | None = None,
    ) -> None:
        self.topic = topic
        self.topic_name = topic_name
        self.partition = partition
        self.handler = handler
        self.settings = settings
        self.placement = placement
        """The topic's canonical partitions; None applies every record where it landed."""
        self.ordered: frozenset[str] = getattr(handler, "ordered_types", frozenset())
        """Event types the handler must get in event-time order (see engine/holdback)."""
        self.holdback = HoldBack()
        self.forwards: list[Forward] = []
        """Misplaced records to send to their canonical partition before the next checkpoint."""
        self.repartition_offset: int | None = None
        """Next offset of this partition's repartition topic to read."""
        self.origins = OriginLedger()
        self._forwards_moved = False
        self.ids = IdStore(settings.effective_dedupe_horizon)
        self.legacy_ids: IdStore | None = None
        """Ids restored from checkpoints hashed the old way; gone once they leave the horizon."""
        self.out = Observations()
        self.rejected: list[Rejection] = []
        self.next_offset: int | None = None
        """First offset not yet covered by a checkpoint (None: nothing checkpointed yet)."""
        self.seq = 0
        self.link_offset: int | None = None
        """Next cart-orders link offset to read (carts partitions only)."""
        self._links_moved = False
        self.position = 0
        """Offset after the last record processed: records below it are skipped."""
        self.last_full_at = float("-inf")
        """When the last full-state checkpoint was written: one is due every snapshot_interval."""
        self._full_phase = (zlib.crc32(f"{topic_name}:{partition}".encode()) % 1000 / 1000) * (
            settings.snapshot_interval / 2
        )
        """Spreads partitions' full checkpoints over the interval instead of one big flush."""

    # -- processing -------------------------------------------------------------------------
    def process(
        self,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        now: float,
    ) -> None:
        if offset < self.position:
            return  # seen already: a replay after a crash or rebalance, or a re-fetch
        self.position = offset + 1
        self.out.now = now
        if self.placement is not None and not self._rejected_wherever_it_lands(key, value):
            home = route(key, self.partition, self.placement)
            if home is not None:
                assert key is not None  # route() keeps keyless records here
                here = origin_header(self.partition, offset)
                self.forwards.append(Forward(home, key, value, [*headers, here]))
                self.out.count("misplaced", (self.topic_name,))
                return
        self._apply(offset, key, value, headers, now, None)

    def _rejected_wherever_it_lands(self, key: bytes | None, value: bytes | None) -> bool:
        """Too large a value or key: rejected here, never forwarded. A forward of it could pass
        the repartition topic's size limit, and a refused forward stalls every flush."""
        return (key is not None and len(key) > MAX_KEY_BYTES) or (
            value is not None and len(value) > self.settings.max_record_bytes
        )

    def process_forwarded(
        self,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        now: float,
    ) -> None:
        """A record of this partition that its producer placed elsewhere (repartition topic)."""
        if self.repartition_offset is not None and offset < self.repartition_offset:
            return
        self.repartition_offset = offset + 1
        self._forwards_moved = True
        self.out.now = now
        origin, own_headers = split_origin(self.topic_name, headers)
        if origin is not None and not self.origins.admit(origin):
            return  # re-sent after its origin crashed before checkpointing: applied already
        at = origin.offset if origin is not None else offset
        self._apply(at, key, value, own_headers, now, origin)

    def _apply(
        self,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        now: float,
        origin: Origin | None,
    ) -> None:
        """Decode, dedupe and hand to the domain: the same for records landed here or sent here."""
        settings = self.settings
        try:
            event = decode_record(
                self.topic,
                key,
                value,
                now=now,
                max_bytes=settings.max_record_bytes,
                max_depth=settings.max_json_depth,
                max_future_skew=settings.max_future_skew,
            )
        except EventRejected as rejected:
            self.rejected.append(
                Rejection(
                    offset, key, value, tuple(headers), rejected.reason, rejected.detail, origin
                )
            )
            self.out.count("rejected", (self.topic_name, rejected.reason))
            return
        time = event.ts
        # an id is remembered for the horizon past the later of its event time and its arrival:
        # filed under its event time, an old event's id would be forgotten at the next flush, and
        # a repeat of a backfill would count (and signal) again
        filed = time if time > now else now
        if self._seen_legacy(event.event_id) or not self.ids.admit(id_hash(event.event_id), filed):
            self.out.count("duplicate", (self.topic_name,))
            return
        self.out.count("events", (self.topic_name, event.event_type))
        if now - time > settings.longest_window:
            self.out.count("late", (self.topic_name,))
            self.handler.handle_late(event, self.out)
            return
        if event.event_type in self.ordered:
            assert value is not None  # decode_record rejects a record without a value
            self.holdback.hold(time, now, key, value, event)
            return
        self.handler.handle(event, self.out)

    def _seen_legacy(self, event_id: str) -> bool:
        legacy = self.legacy_ids
        return legacy is not None and legacy.seen(legacy_id_hash(event_id))

    def _restore_ids(self, checkpoint: Checkpoint, now: float) -> None:
        if checkpoint.id_hash == ID_HASH:
            self.ids.restore(checkpoint.ids, now)
            return
        if self.legacy_ids is None:
            self.legacy_ids = IdStore(self.ids.horizon)
        self.legacy_ids.restore(checkpoint.ids, now)

    def _expire_ids(self, now: float) -> None:
        self.ids.expire(now)
        if self.legacy_ids is not None:
            self.legacy_ids.expire(now)
            if not self.legacy_ids:
                self.legacy_ids = None  # back to one hash per event

    def _release(self, settled: float) -> None:
        """Hand held events to the handler once their topic is settled (engine/holdback)."""
        for held in self.holdback.release(settled):
            self.handler.handle(self._held_event(held), self.out)

    def _held_event(self, held: Held) -> Any:
        if held.event is not None:
            return held.event
        # restored from a checkpoint: valid when it arrived, and decoding is deterministic
        # (only the future-skew check reads the clock, and the clock only moved forward)
        return decode_record(self.topic, held.key, held.value, now=max(self.out.now, held.time))

    def reject_unreadable(self, offset: int, detail: str) -> None:
        """Step over a record the client cannot parse, leaving a reason-only dead letter."""
        if offset < self.position:
            return
        self.position = offset + 1
        self.rejected.append(Rejection(offset, None, None, (), UNREADABLE, detail))
        self.out.count("rejected", (self.topic_name, UNREADABLE))

    def process_link(self, offset: int, key: bytes | None, value: bytes | None, now: float) -> None:
        """An order named a cart of this partition (see pipeline/engine/links.py)."""
        if self.link_offset is not None and offset < self.link_offset:
            return
        self.link_offset = offset + 1
        self._links_moved = True
        handle_link = getattr(self.handler, "handle_link", None)
        if handle_link is None or key is None or value is None:
            return
        self.out.now = now
        time, order_id = decode_link(value)
        handle_link(key.decode(), time, order_id, self.out)

    def take_links(self) -> list[tuple[str, float, str]]:
        """Cart links produced since the last call, to be written before the checkpoint."""
        links, self.out.links = self.out.links, []
        return links

    def take_forwards(self) -> list[Forward]:
        """Misplaced records since the last call, to be written before the checkpoint."""
        forwards, self.forwards = self.forwards, []
        return forwards

    def take_signals(self) -> list[tuple[str, dict[str, Any]]]:
        """Signals decided since the last call, to be written before the checkpoint."""
        signals, self.out.signals = self.out.signals, []
        return signals

    def tick(self, now: float, decide_until: float | None = None) -> None:
        """Release due observations and fire domain timers.

        Timers fire, and held events are released, as of ``decide_until`` when given: the time
        up to which everything another partition may tell this one (forwarded records, cart-order
        links) is known to have arrived.
        """
        self.out.release(now)
        settled = now if decide_until is None else min(now, decide_until)
        if self.holdback.held:
            self._release(settled)
        self.handler.tick(settled, self.out)

    # -- checkpoints --------------------------------------------------------------------------
    def take_checkpoint(self, now: float) -> Checkpoint | None:
        """Everything since the last checkpoint (records or timer output), or None."""
        progressed = self.position > (self.next_offset or 0)
        full = now - self.last_full_at >= self.settings.snapshot_interval
        moved = self._links_moved or self._forwards_moved or self.holdback.changed
        if not (progressed or full or self.out.delta or moved):
            return None
        if progressed:
            self.next_offset = self.position
        if full:
            first = self.last_full_at == float("-inf")
            self.last_full_at = now - (self._full_phase if first else 0.0)
        self.seq += 1
        checkpoint = Checkpoint(
            topic=self.topic_name,
            partition=self.partition,
            seq=self.seq,
            next_offset=self.next_offset if self.next_offset is not None else 0,
            written_at=now,
            delta=self.out.take_delta(),
            ids=self.ids.take_added(),
            state=self.handler.take_changes(full),
            pending=self.out.pending_to_wire(),
            link_offset=self.link_offset,
            repartition_offset=self.repartition_offset,
            origins=self.origins.to_wire(),
            held=self.holdback.to_wire() if full else [],
            held_delta=None if full else self.holdback.delta_to_wire(),
            full=full,
        )
        self._links_moved = self._forwards_moved = False
        self._expire_ids(now)
        return checkpoint

    def restore(self, checkpoints: Sequence[Checkpoint], now: float) -> None:
        """Rebuild state from this partition's checkpoints, oldest first."""
        for _ in self.restoring(checkpoints, now):
            pass

    def restoring(self, checkpoints: Sequence[Checkpoint], now: float) -> Iterator[None]:
        """:meth:`restore`, one checkpoint per step, so a worker can serve heartbeats between.

        Entity state starts at the last full checkpoint (what came before it is superseded);
        event ids come from every checkpoint given, which must reach back over the dedupe
        horizon (see :meth:`pipeline.engine.view.View.recovery_start`).
        """
        ledger = SequenceLedger()
        admitted = [c for c in checkpoints if ledger.admit(c)]
        last_full = max((i for i, c in enumerate(admitted) if c.full), default=0)
        for i, checkpoint in enumerate(admitted):
            self._restore_ids(checkpoint, now)
            if i >= last_full:
                self.handler.restore(checkpoint.entity_state())
            if checkpoint.full:
                self.last_full_at = checkpoint.written_at
            self.out.restore_pending(checkpoint.pending)
            if checkpoint.held_delta is not None:
                if i >= last_full:  # before it, the full checkpoint's list supersedes them
                    self.holdback.restore_delta(*checkpoint.held_delta)
            else:
                self.holdback.restore(checkpoint.held)
            self.next_offset = self.position = checkpoint.next_offset
            self.seq = checkpoint.seq
            if checkpoint.link_offset is not None:
                self.link_offset = checkpoint.link_offset
            if checkpoint.repartition_offset is not None:
                self.repartition_offset = checkpoint.repartition_offset
            self.origins.restore(checkpoint.origins)
            yield
        self._expire_ids(now)
