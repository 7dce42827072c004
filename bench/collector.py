"""HTTP intake benchmark: the collector against producing the same events straight to Kafka.

``python -m bench.collector [--bootstrap H:P] [--events N]`` runs, in one go:

* the ceiling: the events produced directly with a tuned aiokafka producer (``send_batch``,
  big batches, acks=all, as the collector uses);
* the collector (``python -m pipeline.collector.server`` in its own process) saturated by a
  concurrent aiohttp client with batches of 1, 20 and 500 events: requests/s and events/s;
* latency p50/p99 per batch size at half the saturated request rate (open loop, fixed pacing);
* the same intake code under Starlette + uvicorn instead of aiohttp (batches of 1 and 500), to
  back the choice of HTTP server with a measurement.

Results are printed and written to ``bench/results/collector-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench.data import create_source_topics, encode_events, realistic_events, send_records
from bench.report import machine_info
from bench.worker import free_port
from pipeline.tools.simulate import SimEvent

TOKEN = "bench-token"
BATCH_SIZES = (1, 20, 500)
REPEATS = 3
"""Each throughput is the median of this many runs: the machine is shared, single runs vary 2x."""
_ROOT = Path(__file__).resolve().parents[1]


# --- the ceiling ------------------------------------------------------------------------------


async def direct_produce(bootstrap: str, prefix: str, events: list[SimEvent]) -> dict:
    """Events/s produced straight to Kafka, serialisation and partitioning included."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1 << 20, linger_ms=5
    )
    await producer.start()
    try:
        began = time.perf_counter()
        records = encode_events(events, 4)
        await asyncio.gather(*await send_records(producer, prefix, records))
        seconds = time.perf_counter() - began
    finally:
        await producer.stop()
    return {"events": len(events), "seconds": seconds, "events_per_s": len(events) / seconds}


# --- servers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def server(kind: str, bootstrap: str, prefix: str) -> Iterator[str]:
    """A collector process (``aiohttp``: the real one; ``starlette``: same code, other server)."""
    env = {
        **os.environ,
        "CX_BOOTSTRAP_SERVERS": bootstrap,
        "CX_TOPIC_PREFIX": prefix,
        "CX_APP_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "CX_SOURCE_PARTITIONS": "4",
        "CX_COLLECTOR_TOKENS": TOKEN,
        "CX_COLLECTOR_PORT": str(free_port()),
        "CX_COLLECTOR_RATE_LIMIT": "1000000",
        "CX_COLLECTOR_RATE_BURST": "1000000",
        "CX_LOG_LEVEL": "WARNING",
    }
    command = ["-m", "pipeline.collector"]
    if kind == "starlette":
        command = ["-m", "bench.collector", "--serve-starlette"]
    process = subprocess.Popen(
        [sys.executable, *command], env=env, stdout=subprocess.PIPE, cwd=_ROOT
    )
    try:
        url = process.stdout.readline().decode().strip()  # type: ignore[union-attr]
        if not url.startswith("http"):
            raise RuntimeError(f"{kind} collector did not start")
        _wait_listening(url)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def serve_starlette() -> None:
    """The collector's intake steps (auth, body, judge, produce) as a Starlette app on uvicorn.

    Only ``/v1/events`` without the limits' bells: enough to compare the HTTP servers' cost.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from pipeline.collector.auth import token_index
    from pipeline.collector.config import CollectorSettings
    from pipeline.collector.intake import BodyReader, split_events
    from pipeline.collector.metrics import CollectorMetrics
    from pipeline.collector.producer import EventProducer
    from pipeline.collector.triage import Judge
    from pipeline.settings import Settings

    settings, collector = Settings(), CollectorSettings()
    producers: list[EventProducer] = []  # aiokafka wants a running loop: made in lifespan
    judge = Judge(settings, collector.default_currency)

    async def events(request: Request) -> Response:
        if token_index(request.headers.get("authorization"), collector.token_list) is None:
            return Response(status_code=401)
        reader = BodyReader(collector.max_body, request.headers.get("content-encoding", ""))
        async for chunk in request.stream():
            reader.feed(chunk)
        content_type = request.headers.get("content-type", "").split(";")[0]
        triage = judge.events(split_events(reader.finish(), content_type), time.time())
        await producers[0].deliver(triage)
        return Response(orjson.dumps(triage.response()), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        producer = EventProducer(settings, collector, CollectorMetrics())
        producers.append(producer)
        await producer.start()
        print(f"http://{collector.host}:{collector.port}", flush=True)
        yield
        await producer.stop()

    app = Starlette(routes=[Route("/v1/events", events, methods=["POST"])], lifespan=lifespan)
    uvicorn.run(
        app, host=collector.host, port=collector.port, log_level="warning", access_log=False
    )


def _wait_listening(url: str, timeout: float = 15.0) -> None:
    """uvicorn runs the lifespan (which prints the URL) before it binds: wait for the port."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- load ------------------------------------------------------------------------------------


def bodies(events: list[dict[str, Any]], batch: int) -> list[bytes]:
    return [orjson.dumps(events[i : i + batch]) for i in range(0, len(events) - batch + 1, batch)]


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    began = time.perf_counter()
    async with session.post(url, data=body, headers=_HEADERS) as answer:
        await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"collector answered {answer.status}")
    return time.perf_counter() - began


_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def saturate(url: str, payloads: list[bytes], batch: int, concurrency: int) -> dict:
    """All payloads as fast as ``concurrency`` connections go: requests/s and events/s."""
    queue = iter(payloads)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for body in payloads[:concurrency]:  # warm the connections and the producer
            await _post(session, f"{url}/v1/events", body)

        async def client() -> None:
            for body in queue:
                await _post(session, f"{url}/v1/events", body)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    return {
        "requests_per_s": len(payloads) / seconds,
        "events_per_s": len(payloads) * batch / seconds,
        "requests": len(payloads),
        "concurrency": concurrency,
    }


async def paced(url: str, payloads: list[bytes], rate: float, seconds: float) -> dict:
    """Open loop at ``rate`` requests/s for ``seconds``: the latency a client sees."""
    latencies: list[float] = []
    count = max(20, int(rate * seconds))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            body = payloads[n % len(payloads)]
            tasks.append(asyncio.create_task(_post(session, f"{url}/v1/events", body)))
        latencies = list(await asyncio.gather(*tasks))
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "rate_per_s": rate,
        "requests": count,
        "p50_ms": cuts[49] * 1e3,
        "p99_ms": cuts[98] * 1e3,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median events/s, plus every run's events/s to show the spread."""
    ordered = sorted(runs, key=lambda run: run["events_per_s"])
    return {**ordered[len(ordered) // 2], "runs_events_per_s": [r["events_per_s"] for r in runs]}


# --- the run ---------------------------------------------------------------------------------


async def measure(
    bootstrap: str, total: int, *, repeats: int = REPEATS, paced_seconds: float = 5.0
) -> dict[str, Any]:
    simulated = realistic_events(total, seed=7, history=20 * 3600, now=time.time())
    events = [e.value for e in simulated]
    results: dict[str, Any] = {"events": total, "machine": machine_info()}
    prefix = f"bc{uuid.uuid4().hex[:8]}."
    await create_source_topics(bootstrap, prefix, 4)
    results["direct_produce"] = _median(
        [await direct_produce(bootstrap, prefix, simulated) for _ in range(repeats)]
    )
    servers: dict[str, Any] = {}
    for kind, sizes in (("aiohttp", BATCH_SIZES), ("starlette", (1, 500))):
        with server(kind, bootstrap, prefix) as url:
            figures: dict[str, Any] = {}
            for batch in sizes:
                payloads = bodies(events[: min(total, 3000 * batch)], batch)
                saturated = _median(
                    [await saturate(url, payloads, batch, concurrency=8) for _ in range(repeats)]
                )
                figures[str(batch)] = saturated
                if kind == "aiohttp":
                    half = saturated["requests_per_s"] / 2
                    figures[str(batch)]["half_load"] = await paced(
                        url, payloads, half, paced_seconds
                    )
            servers[kind] = figures
    results["collector"] = servers
    best = servers["aiohttp"]["500"]["events_per_s"]
    results["batch_500_share_of_direct"] = best / results["direct_produce"]["events_per_s"]
    return results


def intake(bootstrap: str | None, total: int, **options: Any) -> dict[str, Any]:
    """:func:`measure` on ``bootstrap`` or on a fresh embedded broker of its own (how
    ``python -m bench`` runs it: the main run's broker already holds millions of records)."""
    with contextlib.ExitStack() as stack:
        if not bootstrap:
            from pipeline.kafka.broker import EmbeddedBroker

            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap
        return asyncio.run(measure(bootstrap, total, **options))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__)
    parser.add_argument("--bootstrap", help="an existing Kafka (default: an embedded Tansu)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--serve-starlette", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_starlette:
        serve_starlette()
        return 0
    results = intake(args.bootstrap, args.events)
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2)
    out = (
        _ROOT
        / "bench"
        / "results"
        / f"collector-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.write_bytes(text + b"\n")
    print(text.decode())
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
