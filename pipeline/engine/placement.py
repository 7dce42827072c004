"""Where a record belongs, and how a record that landed elsewhere travels to its owner.

Producers may place records anywhere (CONTRACT.md "Placement is the producer's business"), but
entity state and the event-id store must live in ONE place per entity. That place is the
*canonical* partition: murmur2(key) mod the topic's partition count, what Java, aiokafka and
KafkaJS producers choose by default, so their records are already home and cost one hash.

A record elsewhere (CRC32, FNV-1a, round-robin, explicit partitions) is forwarded raw to the
internal topic ``<app_id>.repartition-<topic>`` at its canonical partition, with headers naming
where it landed. The owner of ``cx.X[p]`` reads ``repartition-X[p]`` and applies each forward as
if it had arrived on ``cx.X[p]``. Forwards are sent before the checkpoint of the partition they
came from, so a crash can repeat them; :class:`OriginLedger` makes a repeat change nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

ORIGIN = "cx.origin"
"""Header of a forward: ``b"<partition>:<offset>"`` where it landed in the same source topic
(one header, appended last: cheap to write and to find)."""

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as an unsigned 32-bit int.

    Our own copy because the engine stays free of Kafka clients; it reads whole 32-bit words at
    once, which makes it about twice as fast as aiokafka's byte-by-byte version.
    """
    length = len(data)
    h = _SEED ^ length
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = words * 4
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def canonical_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Placement:
    """The canonical partition of keys of one topic, with a bounded cache.

    An entity's events repeat its key (a cart has several), so most look-ups are a dict hit; the
    cache is simply dropped when full, which bounds memory without bookkeeping per entry.
    """

    def __init__(self, partitions: int, cache_size: int = 100_000) -> None:
        if partitions < 1:
            raise ValueError(f"a topic has at least one partition, not {partitions}")
        self.partitions = partitions
        self.cache_size = cache_size
        self._cache: dict[bytes, int] = {}

    def of(self, key: bytes) -> int:
        partition = self._cache.get(key)
        if partition is None:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            partition = self._cache[key] = canonical_partition(key, self.partitions)
        return partition


def route(key: bytes | None, partition: int, placement: Placement) -> int | None:
    """Where a record that landed on ``partition`` must be applied: None means right here.

    A record without a key stays where it landed: it is invalid (the key is the entity id) and
    is rejected there, naming the place it was produced to.
    """
    if key is None:
        return None
    home = placement.of(key)
    return None if home == partition else home


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a forwarded record was produced: what its dead letter must name."""

    topic: str
    partition: int
    offset: int


def origin_header(partition: int, offset: int) -> tuple[str, bytes]:
    return (ORIGIN, b"%d:%d" % (partition, offset))


def split_origin(
    topic: str, headers: Sequence[tuple[str, bytes]]
) -> tuple[Origin | None, Sequence[tuple[str, bytes]]]:
    """The origin a forward of ``topic`` carries, and the producer's own headers without it.

    None if the origin header is missing or unreadable (nobody but the pipeline writes the
    repartition topic, so that means a hand-written record: it is applied, never deduplicated
    by origin).
    """
    if headers and headers[-1][0] == ORIGIN:  # where forwarding put it
        value, own = headers[-1][1], headers[:-1]
    else:
        found = [v for name, v in headers if name == ORIGIN]
        if not found:
            return None, headers
        value, own = found[-1], [(n, v) for n, v in headers if n != ORIGIN]
    partition, _, offset = value.partition(b":")
    try:
        return Origin(topic, int(partition), int(offset)), own
    except ValueError:
        return None, own


@dataclass(frozen=True, slots=True)
class Forward:
    """A misplaced record on its way to its canonical partition, bytes untouched."""

    partition: int
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]


class OriginLedger:
    """Per origin partition, the highest origin offset applied: the exactly-once rule of forwards.

    One origin partition forwards to one repartition partition in offset order, and a crash
    before its checkpoint re-sends the same records with the same offsets; so a forward at or
    below the highest applied offset is a repeat, applied already. Repeats are not duplicates
    (the producer sent the event once), so they are dropped before the event-id store sees them.
    """

    def __init__(self) -> None:
        self.applied: dict[int, int] = {}

    def admit(self, origin: Origin) -> bool:
        if origin.offset <= self.applied.get(origin.partition, -1):
            return False
        self.applied[origin.partition] = origin.offset
        return True

    def to_wire(self) -> dict[str, int]:
        return {str(partition): offset for partition, offset in self.applied.items()}

    def restore(self, wire: dict[str, int]) -> None:
        for partition, offset in wire.items():
            key = int(partition)
            self.applied[key] = max(offset, self.applied.get(key, -1))
