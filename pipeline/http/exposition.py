"""The HTTP side: /metrics (CX metrics from the view + this worker's health), /healthz, /readyz.

Served from the worker's own event loop (aiohttp), so a scrape reads the view between two batches,
never while a checkpoint is half applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)

from pipeline.engine.view import View
from pipeline.http.view_metrics import ViewExposition
from pipeline.settings import Settings

log = logging.getLogger(__name__)

disable_created_metrics()  # *_created series only confuse rate() users here


class HealthMetrics:
    """Per-worker pipeline health; unlike CX metrics these differ between workers (sum them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        r = self.registry
        self.view_ready = Gauge(
            "cx_pipeline_view_ready",
            "1 once this worker's whole-shop view has caught up.",
            registry=r,
        )
        self.view_lag = Gauge(
            "cx_pipeline_view_lag_seconds",
            "Seconds since the broker last answered this worker's view (grows in an outage).",
            registry=r,
        )
        self.cart_decisions_behind = Gauge(
            "cx_pipeline_cart_decisions_behind_seconds",
            "How far cart decisions trail the clock, waiting for orders to reach their carts.",
            registry=r,
        )
        self.assigned = Gauge(
            "cx_pipeline_assigned_partitions", "Source partitions this worker ingests.", registry=r
        )
        self.lag = Gauge(
            "cx_pipeline_consumer_lag",
            "Records behind the end of each source partition this worker owns.",
            ["topic", "partition"],
            registry=r,
        )
        self.broker_connected = Gauge(
            "cx_pipeline_broker_connected", "1 while the broker answers this worker.", registry=r
        )
        self.checkpoints = Counter(
            "cx_pipeline_checkpoints", "Checkpoint records written by this worker.", registry=r
        )
        self.dead_letters = Counter(
            "cx_pipeline_dead_letters",
            "Records this worker wrote to the dead-letter topic.",
            registry=r,
        )


class MetricsServer:
    def __init__(
        self,
        settings: Settings,
        view: View,
        health: HealthMetrics,
        clock: Callable[[], float],
        ready: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.health = health
        self.ready = ready
        self.view_text = ViewExposition(view, clock, ready)
        """Rendered after the health registry, as the last collector of the same output."""
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/", self._index)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.metrics_host, self.settings.metrics_port)
        await site.start()
        server = site._server
        self.port = server.sockets[0].getsockname()[1] if server and server.sockets else None
        log.info("metrics on http://%s:%s/metrics", self.settings.metrics_host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        """Everything, or with ``?name[]=...`` only those samples, as prometheus_client's own
        exposition does: a poller that needs a few counters does not pay for the whole view."""
        names = request.query.getall("name[]", [])
        if names:
            wanted = frozenset(names)
            restricted = self.health.registry.restricted_registry(wanted)
            body = generate_latest(restricted) + self.view_text.text_of(wanted)
        else:
            body = generate_latest(self.health.registry) + self.view_text.text()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="catching up\n")

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="cx-pipeline worker: see /metrics\n")
