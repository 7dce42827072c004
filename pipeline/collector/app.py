"""The collector's aiohttp application: routes, auth, limits, CORS, responses (CONTRACT.md).

Each intake request runs the same steps: authenticate (401), rate-limit (429), read the body
under size and time limits (413, 408), parse (400), judge every event with the worker's
decoder, and hand everything to Kafka; 200 only once Kafka acknowledged it all (else 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_cors
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.collector.auth import token_index
from pipeline.collector.config import CollectorSettings
from pipeline.collector.intake import (
    BodyError,
    BodyReader,
    segment_messages,
    split_events,
    too_large,
)
from pipeline.collector.limits import RateLimiter, retry_after_header
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.producer import EventProducer, Unavailable
from pipeline.collector.triage import Judge, Triage

log = logging.getLogger(__name__)

_READ_CHUNK = 65_536

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request refused whole: nothing was produced. ``reason`` is a bounded metric label."""

    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None):
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


class Collector:
    """The request handlers, holding what they share: settings, limiter, judge, producer."""

    def __init__(
        self,
        collector: CollectorSettings,
        judge: Judge,
        producer: EventProducer,
        metrics: CollectorMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.collector = collector
        self.judge = judge
        self.producer = producer
        self.metrics = metrics
        self.clock = clock
        self.limiter = RateLimiter(collector.rate_limit, collector.rate_burst)

    # -- routes ---------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        body = await self._admit(request)
        items = split_events(body, request.content_type)
        self._check_count(len(items))
        triage = self.judge.events(items, self.clock())
        return _json(await self._deliver(triage))

    def segment_call(self, call: str) -> Handler:
        """A single-message Segment route; ``call`` is the type it implies (``track``, ...)."""

        async def handle(request: web.Request) -> web.Response:
            return await self._segment(request, call)

        return handle

    async def batch(self, request: web.Request) -> web.Response:
        return await self._segment(request, "batch")

    async def healthz(self, request: web.Request) -> web.Response:
        if self.producer.reachable:
            return _json({"status": "ok"})
        return _json({"status": "broker unreachable"}, status=503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    # -- steps ----------------------------------------------------------------------------

    async def _segment(self, request: web.Request, route: str) -> web.Response:
        body = await self._admit(request)
        messages = segment_messages(body, route)
        self._check_count(len(messages))
        triage = self.judge.segment(messages, self.clock(), None if route == "batch" else route)
        return _json({"success": True, **await self._deliver(triage)})

    async def _admit(self, request: web.Request) -> bytes:
        """Authenticate, rate-limit and read the body; raise :class:`Refused` or BodyError."""
        token = token_index(request.headers.get("Authorization"), self.collector.token_list)
        if token is None:
            raise Refused(
                401,
                "unauthorized",
                "missing or wrong token (Authorization: Bearer <token>, or Basic <write key>:)",
                {"WWW-Authenticate": 'Bearer realm="cx-collector", Basic realm="cx-collector"'},
            )
        wait = self.limiter.acquire(token)
        if wait > 0:
            raise Refused(
                429,
                "rate_limited",
                "too many requests for this token",
                {"Retry-After": retry_after_header(wait)},
            )
        return await self._read_body(request)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.collector.max_body
        reader = BodyReader(limit, request.headers.get("Content-Encoding", ""))
        if request.content_length is not None and request.content_length > limit:
            raise too_large(limit)  # the wire bytes are bounded too, gzip or not
        try:
            async with asyncio.timeout(self.collector.read_timeout):
                async for chunk in request.content.iter_chunked(_READ_CHUNK):
                    reader.feed(chunk)
        except TimeoutError:
            raise Refused(408, "timeout", "the body did not arrive in time") from None
        return reader.finish()

    def _check_count(self, count: int) -> None:
        if count > self.collector.max_events:
            raise Refused(
                413,
                "too_many_events",
                f"{count} events in one request; the limit is {self.collector.max_events}",
            )

    async def _deliver(self, triage: Triage) -> dict[str, Any]:
        try:
            await self.producer.deliver(triage)
        except Unavailable as unavailable:
            raise Refused(
                503,
                unavailable.reason,
                "Kafka is not taking events now; retry the same request later",
                {"Retry-After": str(self.collector.retry_after)},
            ) from None
        for topic, count in Counter(record.topic for record in triage.accepted).items():
            self.metrics.accepted.labels(topic).inc(count)
        for reason, count in Counter(rejection.reason for rejection in triage.rejected).items():
            self.metrics.rejected.labels(reason).inc(count)
        for reason, count in triage.ignored.items():
            self.metrics.ignored.labels(reason).inc(count)
        return triage.response()


SEGMENT_CALLS = {
    "track": ("/v1/track", "/v1/t"),
    "page": ("/v1/page", "/v1/p"),
    "screen": ("/v1/screen", "/v1/s"),
    "identify": ("/v1/identify", "/v1/i"),
    "group": ("/v1/group", "/v1/g"),
    "alias": ("/v1/alias", "/v1/a"),
}
"""Segment's single-message routes, long and short: analytics.js (analytics-next) posts each call
to the short one (``/v1/t``, as ``text/plain``), RudderStack's JavaScript SDK to the long one."""
SEGMENT_BATCH_ROUTES = ("/v1/batch", "/v1/b", "/v1/import")
"""``/v1/b``: analytics.js batching and the mobile libraries; ``/v1/import``: Segment's older
server libraries."""


def _route_of(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "other"


def _error_middleware(metrics: CollectorMetrics):
    """Turns refusals into JSON answers (``code``/``message``, as Segment's SDKs expect),
    counts every answer by route and status, and keeps an unexpected error from escaping."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = _route_of(request)
        try:
            response = await handler(request)
        except (Refused, BodyError) as refused:
            reason = refused.reason if isinstance(refused, Refused) else refused.code
            metrics.refused.labels(reason).inc()
            headers = refused.headers if isinstance(refused, Refused) else None
            response = _json({"code": reason, "message": refused.message}, refused.status, headers)
        except web.HTTPNotFound:  # in JSON too: SDKs read `code` from every refusal
            response = _json({"code": "not_found", "message": "no such route"}, 404)
        except web.HTTPException as http_error:  # aiohttp's own answers (405, CORS 403)
            metrics.requests.labels(route, str(http_error.status)).inc()
            raise
        except Exception:
            log.exception("unexpected error on %s", route)
            metrics.refused.labels("internal_error").inc()
            response = _json({"code": "internal_error", "message": "internal error"}, 500)
        metrics.requests.labels(route, str(response.status)).inc()
        return response

    return middleware


def build_app(
    collector: CollectorSettings, judge: Judge, producer: EventProducer, metrics: CollectorMetrics
) -> web.Application:
    """The aiohttp application; the caller starts and stops ``producer``."""
    handlers = Collector(collector, judge, producer, metrics)
    app = web.Application(
        middlewares=[_error_middleware(metrics)], client_max_size=collector.max_body
    )
    intake = [app.router.add_post("/v1/events", handlers.events)]
    for call, paths in SEGMENT_CALLS.items():
        handle = handlers.segment_call(call)
        intake += [app.router.add_post(path, handle) for path in paths]
    intake += [app.router.add_post(path, handlers.batch) for path in SEGMENT_BATCH_ROUTES]
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/metrics", handlers.metrics_page)
    if collector.origins:
        options = aiohttp_cors.ResourceOptions(
            allow_credentials=False,
            # any header the browser asks for: SDKs add their own (RudderStack's AnonymousId and
            # Rsa-Retry-*, analytics.js's X-Retry-Count on retries), and a refused preflight
            # loses the events with no error the shop would see; origins and tokens guard
            allow_headers="*",
            expose_headers=("Retry-After",),
            max_age=600,
        )
        cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(collector.origins, options))
        for route in intake:
            cors.add(route)
    return app
