"""Run real workers as subprocesses against the session's broker, and read their /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> object:
    """Poll ``predicate`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})"
    )


@dataclass
class Pipeline:
    """One isolated pipeline deployment (own topic prefix and app id) on a shared broker."""

    bootstrap: str
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"t{self.name}."

    def env(self) -> dict[str, str]:
        return {
            "CX_BOOTSTRAP_SERVERS": self.bootstrap,
            "CX_TOPIC_PREFIX": self.prefix,
            "CX_APP_ID": f"cxt-{self.name}",
            "CX_SESSION_TIMEOUT": "1",
            "CX_FLUSH_INTERVAL": "0.2",
            "CX_SOURCE_PARTITIONS": "4",
            **self.extra_env,
        }

    def start_worker(self, log_dir: Path) -> WorkerProcess:
        worker = WorkerProcess(self.env(), log_dir / f"worker-{len(self.workers)}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "CX_METRICS_PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"], env=self.env, stdout=log, stderr=log
        )
        wait_for(self.ready, ready_timeout, f"worker ready at {self.url} (log {self.log_path})")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return response.read().decode()

    def samples(self) -> Samples:
        return parse_samples(self.metrics_text())

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def cx_samples(samples: Samples, names: Iterable[str]) -> Samples:
    wanted = set(names)
    return {key: value for key, value in samples.items() if key[0] in wanted}


def produce(
    bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes | None]], headers=None
) -> int:
    """Produce (topic, key, value) with a plain aiokafka producer; returns the count."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value=value, key=key, headers=headers or [])
                for topic, key, value in records
            ]
            await asyncio.gather(*futures)
            return len(futures)
        finally:
            await producer.stop()

    return asyncio.run(run())


def produce_events(bootstrap: str, prefix: str, events: Iterable[dict]) -> int:
    """Produce contract events to their topics with the contract's key."""
    routes = {
        "cart": ("carts", "cart_id"),
        "checkout": ("carts", "cart_id"),
        "order": ("orders", "order_id"),
        "ticket": ("tickets", "ticket_id"),
        "survey": ("surveys", "response_id"),
    }
    records = []
    for event in events:
        topic, key_field = routes[event["event_type"].split(".")[0]]
        records.append((prefix + topic, str(event[key_field]).encode(), orjson.dumps(event)))
    return produce(bootstrap, records)


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list:
    """All records of ``topic`` once at least ``expected`` are there."""

    async def run() -> list:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            records: list = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for part in batch.values():
                    records.extend(part)
                if len(records) >= expected:
                    # drain anything else already there, then stop
                    extra = await consumer.getmany(timeout_ms=300)
                    for part in extra.values():
                        records.extend(part)
                    return records
            raise AssertionError(f"only {len(records)} of {expected} records in {topic}")
        finally:
            await consumer.stop()

    return asyncio.run(run())
