"""The embedded Tansu broker: it starts ready, serves Kafka, and never outlives its parent."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.kafka.broker import BrokerError, EmbeddedBroker, broker_binary, wait_until_ready

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


# --- helpers -------------------------------------------------------------------------------


def poll_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Wait for a condition with a deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def process_gone(pid: int, created: float | None = None) -> bool:
    """True once ``pid`` has exited (a zombie counts; a recycled pid does not count as ours)."""
    try:
        proc = psutil.Process(pid)
        if created is not None and proc.create_time() != created:
            return True
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tansu_children() -> set[int]:
    """Live Tansu processes descending from this test process."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "tansu" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One stdout line of ``proc`` within ``timeout`` seconds, else fail with its stderr."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if sel.select(timeout) and (line := proc.stdout.readline()):
            return line
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"child printed nothing within {timeout:g}s; stderr:\n{err}")


async def produce_and_consume(bootstrap: str, topic: str) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        record = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    return record.value


# --- lifecycle -----------------------------------------------------------------------------


def test_binary_resolves_offline() -> None:
    path = broker_binary()
    assert path.is_file() and os.access(path, os.X_OK)


def test_sync_start_is_ready_and_stop_leaves_no_process() -> None:
    before = tansu_children()
    broker = EmbeddedBroker()
    broker.start(timeout=30)
    pid = broker.pid
    assert pid is not None and broker.returncode() is None
    assert broker.port != 0 and broker.bootstrap == f"127.0.0.1:{broker.port}"
    created = psutil.Process(pid).create_time()
    assert os.getpgid(pid) == pid, "broker must lead its own process group (Ctrl-C isolation)"
    asyncio.run(wait_until_ready(broker.bootstrap, timeout=5))
    log_path = broker.log_path
    assert log_path is not None and log_path.exists()

    broker.stop()
    broker.stop()  # idempotent

    assert process_gone(pid, created)
    assert broker.returncode() is not None
    assert tansu_children() <= before
    assert not log_path.exists(), "a clean stop removes the temporary log"


async def test_async_context_manager_serves_kafka(unique_name: Callable[[str], str]) -> None:
    before = tansu_children()
    async with EmbeddedBroker() as broker:
        pid = broker.pid
        assert pid is not None
        assert await produce_and_consume(broker.bootstrap, unique_name("lifecycle")) == b"hello"
    assert process_gone(pid)
    assert tansu_children() <= before


async def test_session_broker_serves_kafka(
    broker: EmbeddedBroker, unique_name: Callable[[str], str]
) -> None:
    assert broker.returncode() is None
    assert await produce_and_consume(broker.bootstrap, unique_name("session")) == b"hello"


# --- no orphans ----------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    from pipeline.kafka.broker import EmbeddedBroker

    mode = sys.argv[1]
    broker = EmbeddedBroker()
    if mode == "thread":  # started from a thread that exits right after
        worker = threading.Thread(target=broker.start)
        worker.start()
        worker.join()
        # join() returns slightly before the OS thread is gone; PDEATHSIG fires at the latter.
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/self/task/{worker.native_id}") and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        broker.start()
    print(broker.pid, broker.bootstrap, flush=True)
    if mode == "crash":
        raise RuntimeError("parent crashes without stopping its broker")
    sys.stdin.read()  # block until the test kills us
    """
)


@pytest.mark.parametrize("mode", ["sigkill", "thread", "crash"])
def test_parent_death_leaves_no_broker(mode: str, tmp_path: Path) -> None:
    """SIGKILL (PDEATHSIG), a spawning thread that exits (spawner thread), a crash (atexit)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid_text, bootstrap = read_line(parent, timeout=30).split()
        pid = int(pid_text)
        created = psutil.Process(pid).create_time()
        if mode == "crash":
            assert parent.wait(timeout=15) == 1
        else:
            # The thread that called start() has exited; the broker must still serve.
            asyncio.run(wait_until_ready(bootstrap, timeout=5))
            assert not process_gone(pid, created)
            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=10)
        poll_until(lambda: process_gone(pid, created), 10, f"broker pid {pid} to die ({mode})")
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.communicate()


FORK_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from pipeline.kafka.broker import EmbeddedBroker, wait_until_ready

    outer = EmbeddedBroker()
    outer.start()
    pid = os.fork()
    if pid == 0:
        with EmbeddedBroker():  # hangs if the parent's spawner thread were assumed alive
            pass
        sys.exit(0)  # runs atexit: must not stop the parent's broker
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert outer.running()
    asyncio.run(wait_until_ready(outer.bootstrap, timeout=5))
    outer.stop()
    print("ok")
    """
)


def test_forked_child_starts_its_own_broker_and_spares_the_parents(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_CHILD],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- failure detection ---------------------------------------------------------------------


async def test_dead_broker_is_detected() -> None:
    broker = EmbeddedBroker()
    await broker.astart()
    exits: list[int] = []
    watcher = asyncio.create_task(broker.watch(exits.append, interval=0.05))
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGKILL)

    code = await asyncio.wait_for(watcher, timeout=10)

    assert code == -signal.SIGKILL
    assert exits == [code]
    assert broker.returncode() == code
    await broker.astop()  # no-op on a dead broker
    assert broker.log_path is not None and broker.log_path.exists(), "kept for the post-mortem"
    broker.log_path.unlink()


async def test_watch_is_silent_on_deliberate_stop() -> None:
    exits: list[int] = []
    async with EmbeddedBroker() as broker:
        watcher = asyncio.create_task(broker.watch(exits.append, interval=0.05))
    assert await asyncio.wait_for(watcher, timeout=10) == broker.returncode()
    assert exits == []


def test_start_failure_raises_with_log_tail() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = EmbeddedBroker(port=taken.getsockname()[1])
        with pytest.raises(BrokerError, match="Address in use") as info:
            broker.start(timeout=20)
    assert "exited" in str(info.value)
    assert broker.returncode() is not None
    if broker.log_path is not None:
        broker.log_path.unlink(missing_ok=True)


async def test_wait_until_ready_times_out_with_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        started = time.monotonic()
        with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port} not ready after 0\.5s"):
            await wait_until_ready(f"127.0.0.1:{port}", timeout=0.5)
    assert time.monotonic() - started < 5


async def test_ensure_topics_creates_every_mirror_with_its_sources_partitions(
    broker, unique_name: Callable[[str], str]
) -> None:
    """cx.carts has two mirrors (links, repartition): both exist, with its partition count, before
    anything is produced. A broker that auto-creates a missing one (Tansu: 4 partitions) would
    leave links of cart partitions >= 4 nowhere, and the carts barrier would never settle."""
    from aiokafka.admin import AIOKafkaAdminClient

    from pipeline.kafka.topics import ensure_topics, link_topic, repartition_topics
    from pipeline.settings import Settings

    name = unique_name("mirrors")
    settings = Settings(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"{name}.",
        app_id=name,
        source_partitions=6,
    )
    await ensure_topics(settings)
    mirrors = {link_topic(settings), *repartition_topics(settings).values()}
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(mirrors))
    finally:
        await admin.close()
    counts = {topic["topic"]: len(topic["partitions"]) for topic in described}
    assert counts == dict.fromkeys(mirrors, 6)


async def test_dead_letter_and_repartition_topics_take_records_past_kafkas_default_size(
    broker, unique_name: Callable[[str], str]
) -> None:
    """A dead letter is a source record plus headers, or an HTTP item up to the body limit, and a
    forward is a source record plus a header: both topics are created with ``max.message.bytes``
    far past Kafka's 1 MB default (Tansu stores the setting without enforcing it;
    ``describe_configs`` reads it back)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from pipeline.kafka.topics import (
        DEAD_LETTER,
        SNAPSHOT_MAX_BYTES,
        ensure_topics,
        repartition_topics,
    )
    from pipeline.settings import Settings

    name = unique_name("dlq")
    settings = Settings(bootstrap_servers=broker.bootstrap, topic_prefix=f"{name}.", app_id=name)
    await ensure_topics(settings)
    topics = [settings.topic(DEAD_LETTER), *repartition_topics(settings).values()]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        )
    finally:
        await admin.close()
    resources = [resource for answer in answers for resource in answer.resources]
    assert len(resources) == len(topics)
    for resource in resources:
        configs = {entry[0]: entry[1] for entry in resource[4]}
        assert int(configs["max.message.bytes"]) == SNAPSHOT_MAX_BYTES, resource[2]
