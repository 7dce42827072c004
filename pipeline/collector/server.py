"""Run the collector: topics, producer, HTTP site; stop gracefully on SIGTERM/SIGINT.

Shutdown order is what makes "nothing acked is lost" hold: stop accepting connections, let
in-flight requests finish (each answers 200 only after Kafka's acks) for ``shutdown_timeout``,
then flush and close the producer.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from pipeline.collector.app import build_app
from pipeline.collector.config import CollectorSettings
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.producer import EventProducer
from pipeline.collector.triage import Judge
from pipeline.kafka.topics import ensure_topics
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Ready = Callable[[str], None]
"""Called with the collector's base URL (``http://host:port``) once it accepts requests."""


async def run_collector(
    settings: Settings,
    collector_settings: CollectorSettings,
    ready: Ready | None = None,
    metrics: CollectorMetrics | None = None,
) -> None:
    """Serve until cancelled (the CLI cancels on SIGTERM/SIGINT), then shut down gracefully."""
    if not settings.bootstrap_servers:
        raise ValueError("the collector needs CX_BOOTSTRAP_SERVERS (or --bootstrap H:P)")
    metrics = metrics or CollectorMetrics()
    await ensure_topics(settings)
    producer = EventProducer(settings, collector_settings, metrics)
    await producer.start()
    app = build_app(
        collector_settings, Judge(settings, collector_settings.default_currency), producer, metrics
    )
    runner = make_runner(app, collector_settings)
    try:
        await runner.setup()
        site = web.TCPSite(runner, collector_settings.host, collector_settings.port)
        await site.start()
        url = _base_url(runner, collector_settings.host)
        log.info("collector listening on %s", url)
        if ready is not None:
            ready(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()  # stops listening, waits for in-flight requests
        await producer.stop()  # flushes anything still queued


def make_runner(app: web.Application, collector_settings: CollectorSettings) -> web.AppRunner:
    """The aiohttp runner with the collector's protocol settings."""
    return web.AppRunner(
        app,
        access_log=None,  # an access log line would carry client details, not our business
        # aiohttp would inflate gzip bodies itself, without a size limit: a gzip bomb's way in;
        # intake.BodyReader inflates them under CX_COLLECTOR_MAX_BODY instead
        auto_decompress=False,
        # also closes connections that never finish their headers (aiohttp arms it at connect)
        keepalive_timeout=collector_settings.idle_timeout,
        shutdown_timeout=collector_settings.shutdown_timeout,
        handle_signals=False,
    )


def _base_url(runner: web.AppRunner, host: str) -> str:
    port = next(iter(runner.addresses))[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}"


def main(bootstrap: str | None = None, host: str | None = None, port: int | None = None) -> int:
    """``cxpipe collect [--bootstrap H:P] [--host H] [--port N]``: run until SIGTERM/SIGINT.

    CLI values override the environment. Prints the base URL on stdout once listening. Bad
    settings or an unreachable broker stop the start with a message naming the problem
    (exit 2 and 1); no traceback.
    """
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        collector_settings = CollectorSettings(**overrides)  # type: ignore[arg-type]
        settings = Settings(**({"bootstrap_servers": bootstrap} if bootstrap else {}))  # type: ignore[arg-type]
        if not settings.bootstrap_servers:
            raise ValueError(
                "the collector needs a broker: set CX_BOOTSTRAP_SERVERS or --bootstrap"
            )
    except (ValidationError, ValueError) as error:
        print(f"cxpipe collect: bad configuration: {error}", file=sys.stderr)
        return 2

    async def serve() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        try:
            await run_collector(
                settings, collector_settings, ready=lambda url: print(url, flush=True)
            )
        except asyncio.CancelledError:
            log.info("collector stopped")

    try:
        asyncio.run(serve())
    except (KafkaError, OSError) as error:
        print(
            f"cxpipe collect: cannot reach Kafka at {settings.bootstrap_servers}: {error!r}",
            file=sys.stderr,
        )
        return 1
    return 0
