"""Topic names and creation: the four source topics, the dead-letter topic, the checkpoint log,
and the internal topics that mirror a source topic's partitions (cart-orders links, repartition)."""

from __future__ import annotations

import contextlib
import logging
import zlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.engine.placement import canonical_partition
from pipeline.settings import Settings

log = logging.getLogger(__name__)

SOURCE_TOPICS = ("carts", "orders", "tickets", "surveys")
DEAD_LETTER = "dead-letter"
SIGNALS = "signals"


def source_topic_names(settings: Settings) -> dict[str, str]:
    """Full topic name -> short name (``"cx.carts" -> "carts"``)."""
    return {settings.topic(short): short for short in SOURCE_TOPICS}


def checkpoint_topic(settings: Settings) -> str:
    return settings.internal_topic("checkpoints")


def snapshot_topic(settings: Settings) -> str:
    """One partition of whole-view snapshots: where a starting worker's view begins."""
    return settings.internal_topic("view-snapshots")


SNAPSHOT_MAX_BYTES = 64 * 1024 * 1024
"""Largest view snapshot record; the snapshot topic is created to accept it."""


def link_topic(settings: Settings) -> str:
    """The cart-orders link topic (see pipeline/engine/links.py)."""
    return settings.internal_topic("cart-orders")


def link_partition(cart_id: str, partitions: int) -> int:
    """The canonical partition of ``cart_id`` (murmur2, Kafka's default partitioner)."""
    return canonical_partition(cart_id.encode(), partitions)


def repartition_topic(settings: Settings, short: str) -> str:
    """Where misplaced records of ``cx.<short>`` travel to their canonical partition."""
    return settings.internal_topic(f"repartition-{short}")


def repartition_topics(settings: Settings) -> dict[str, str]:
    """Full source topic name -> its repartition topic."""
    return {
        full: repartition_topic(settings, short)
        for full, short in source_topic_names(settings).items()
    }


def checkpoint_partition(topic: str, partition: int, partitions: int) -> int:
    """Where a source partition's checkpoints go: stable, so recovery reads one partition."""
    return zlib.crc32(f"{topic}:{partition}".encode()) % partitions


async def ensure_topics(settings: Settings) -> None:
    """Create every topic the pipeline reads or writes, if missing (existing ones are kept).

    The cart-orders link topic must have exactly as many partitions as ``cx.carts``
    (pipeline/engine/links.py), and each repartition topic as its source topic
    (pipeline/engine/placement.py); a mismatch is a deployment error and stops the worker.
    """
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await _create_missing(
            admin,
            settings,
            [*source_topic_names(settings), settings.topic(SIGNALS)],
            settings.source_partitions,
        )
        # a dead letter is a source record plus error headers, or an HTTP item up to the
        # collector's body limit: past Kafka's default 1 MB it would be refused, and with it the
        # flush or request that carries it
        await _create_missing(
            admin,
            settings,
            [settings.topic(DEAD_LETTER)],
            settings.source_partitions,
            {"max.message.bytes": str(SNAPSHOT_MAX_BYTES)},
        )
        # full-state checkpoints and view snapshots bound what recovery and start-up read, so
        # the log may be trimmed by time (settings check it covers the dedupe horizon), never
        # by size
        # a full-state checkpoint of a busy partition runs to megabytes (88k carts: 8.5 MB)
        configs = {
            "retention.ms": str(int(settings.checkpoint_retention * 1000)),
            "retention.bytes": "-1",
            "max.message.bytes": str(SNAPSHOT_MAX_BYTES),
        }
        await _create_missing(
            admin, settings, [checkpoint_topic(settings)], settings.source_partitions, configs
        )
        await _create_missing(admin, settings, [snapshot_topic(settings)], 1, configs)
        await _create_mirror(admin, settings, settings.topic("carts"), link_topic(settings))
        # a forward is a source record plus a header: as large as the source topic allows
        for source, mirror in repartition_topics(settings).items():
            await _create_mirror(
                admin, settings, source, mirror, {"max.message.bytes": str(SNAPSHOT_MAX_BYTES)}
            )
    finally:
        await admin.close()


async def _create_mirror(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    source: str,
    mirror: str,
    configs: dict[str, str] | None = None,
) -> None:
    """Create ``mirror`` with as many partitions as ``source``; stop if an existing one differs."""
    partitions = await _partition_count(admin, source)
    await _create_missing(admin, settings, [mirror], partitions, configs)
    mirror_partitions = await _partition_count(admin, mirror)
    if mirror_partitions != partitions:
        raise RuntimeError(
            f"{mirror} has {mirror_partitions} partitions but {source} has "
            f"{partitions}; they must match (recreate {mirror})"
        )


async def create_missing_topics(settings: Settings, names: list[str], partitions: int) -> None:
    """Create the named topics that do not exist yet (for components besides the worker)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await _create_missing(admin, settings, names, partitions)
    finally:
        await admin.close()


async def _create_missing(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    names: list[str],
    partitions: int,
    configs: dict[str, str] | None = None,
) -> None:
    existing = set(await admin.list_topics())
    missing = [name for name in names if name not in existing]
    if not missing:
        return
    new = [
        NewTopic(name, partitions, settings.replication_factor, topic_configs=configs or {})
        for name in missing
    ]
    with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
        await admin.create_topics(new)
    log.info("created topics %s", ", ".join(missing))


async def _partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    described = await admin.describe_topics([topic])
    return len(described[0]["partitions"])
