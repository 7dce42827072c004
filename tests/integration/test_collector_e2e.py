"""The HTTP collector end to end against the real embedded broker: the real Segment SDK and
httpx as clients, records checked in the topics, every refusal produces nothing, broker outage
answers 503 and recovers by itself, SIGTERM loses nothing acked."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from segment.analytics import Client as SegmentClient

from pipeline.collector import CollectorMetrics, CollectorSettings, run_collector
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.settings import Settings
from tests.integration.harness import Pipeline, consume_all, cx_samples, wait_for
from tests.integration.stories import cart_story, envelope, survey
from tests.integration.tcp_proxy import FaultStyle, TcpProxy
from tests.oracle import (
    CART_METRICS,
    SURVEY_METRICS,
    WINDOWS,
    cart_expectations,
    epoch,
    survey_expectations,
)

pytestmark = pytest.mark.integration

TOKEN = "test-token-1"
OTHER_TOKEN = "test-token-2"


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class RunningCollector:
    """``run_collector`` in its own thread and loop, so synchronous clients can call it."""

    def __init__(self, settings: Settings, **collector: Any) -> None:
        self.settings = settings
        self.collector = CollectorSettings(tokens=f"{TOKEN},{OTHER_TOKEN}", port=0, **collector)
        self.metrics = CollectorMetrics()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(
            run_collector(self.settings, self.collector, self._on_ready, self.metrics)
        )
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as error:
            self._error = error
            self._ready.set()

    def _on_ready(self, url: str) -> None:
        self.url = url
        self._ready.set()

    def __enter__(self) -> RunningCollector:
        self._thread.start()
        assert self._ready.wait(30), "collector did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)  # type: ignore[union-attr]
        self._thread.join(30)
        self._loop.close()

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def settings_for(bootstrap: str, prefix: str | None = None) -> Settings:
    name = uuid.uuid4().hex[:10]
    return Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix or f"t{name}.",
        app_id=f"cxc-{name}",
        source_partitions=4,
    )


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def by_topic(records: list) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for record in records:
        grouped.setdefault(record.topic, []).append(record)
    return grouped


def all_records(settings: Settings, expected: int) -> list:
    """Every record in the prefix's four source topics and dead-letter topic."""
    topics = ["carts", "orders", "tickets", "surveys", "dead-letter"]
    found = []
    for topic in topics:
        found.extend(consume_all(settings.bootstrap_servers, settings.topic(topic), 0, timeout=5))
    assert len(found) == expected, [(r.topic, r.key, r.value) for r in found]
    return found


# --- happy paths --------------------------------------------------------------------------


def test_segment_sdk_events_land_in_their_topics_keyed_and_bad_ones_dead_lettered(broker):
    settings = settings_for(broker.bootstrap)
    now = time.time()
    errors: list = []
    with RunningCollector(settings) as collector:
        client = SegmentClient(
            write_key=TOKEN,
            host=collector.url,
            sync_mode=True,
            gzip=True,
            on_error=lambda error, batch: errors.append(error),
        )
        client.track(
            "user-7",
            "Product Added",
            {"cart_id": "c1", "product_id": "p1", "price": 19.5, "quantity": 2},
            context={"device": {"type": "ios"}},
            timestamp=_dt(now - 60),
            message_id="m-added",
        )
        client.track(
            "user-7",
            "Order Completed",
            {"order_id": "o1", "cart_id": "c1", "revenue": "39.00", "currency": "EUR"},
            timestamp=_dt(now - 30),
            message_id="m-order",
        )
        client.track("user-7", "Product Viewed", {"product_id": "p1"}, message_id="m-viewed")
        client.page("user-7", "Home", message_id="m-page")
        client.track(  # no cart_id: dead-lettered, not lost
            "user-7", "Checkout Started", {"revenue": 5}, timestamp=_dt(now), message_id="m-bad"
        )
        client.flush()
        assert errors == []
        records = by_topic(all_records(settings, 3))
        assert collector.sample("cx_collector_events_ignored_total", reason="unmapped_event") == 1
        assert collector.sample("cx_collector_events_ignored_total", reason="non_track") == 1
        assert collector.sample("cx_collector_events_rejected_total", reason="missing_field") == 1

    (added,) = records[settings.topic("carts")]
    assert added.key == b"c1"
    value = orjson.loads(added.value)
    assert value["event_type"] == "cart.item_added"
    assert (value["channel"], value["customer_id"], value["event_id"]) == (
        "mobile_app",
        "user-7",
        "m-added",
    )
    assert (value["unit_price"], value["quantity"], value["currency"]) == (19.5, 2, "USD")
    (order,) = records[settings.topic("orders")]
    assert order.key == b"o1"
    assert orjson.loads(order.value)["total"] == "39.00"
    assert orjson.loads(order.value)["channel"] == "web"
    (dead,) = records[settings.topic("dead-letter")]
    headers = dict(dead.headers)
    assert headers["cx.error.reason"] == b"missing_field"
    assert b"cart_id" in headers["cx.error.detail"]
    assert headers["cx.error.topic"] == b"http"
    assert set(headers) >= {"cx.error.partition", "cx.error.offset"}
    assert orjson.loads(dead.value)["messageId"] == "m-bad"


def test_events_endpoint_json_array_and_gzipped_ndjson(broker):
    settings = settings_for(broker.bootstrap)
    now = time.time()
    good = [
        envelope("ticket.opened", now - 10, "chat", ticket_id="t1", priority="high"),
        survey(now - 5, 9),
    ]
    bad = {**envelope("ticket.opened", now, ticket_id="t2"), "priority": "panic"}
    with RunningCollector(settings) as collector, httpx.Client(base_url=collector.url) as http:
        answer = http.post("/v1/events", json=[good[0], bad, good[1]], headers=auth())
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["accepted"] == 2
        assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(1, "invalid_field")]
        ndjson = b"\n".join([orjson.dumps(survey(now - 3, 4)), b"{not json", b""])
        answer = http.post(
            "/v1/events",
            content=gzip.compress(ndjson),
            headers={
                **auth(),
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": "gzip",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1
        assert answer.json()["rejected"][0]["reason"] == "invalid_json"
    records = by_topic(all_records(settings, 5))
    assert [r.key for r in records[settings.topic("tickets")]] == [b"t1"]
    assert len(records[settings.topic("surveys")]) == 2
    dead = sorted(
        dict(r.headers)["cx.error.reason"] for r in records[settings.topic("dead-letter")]
    )
    assert dead == [b"invalid_field", b"invalid_json"]
    raw = [r.value for r in records[settings.topic("dead-letter")]]
    assert b"{not json" in raw  # an unparsable line is kept as it came


def test_browser_and_mobile_sdk_routes_take_their_calls(broker):
    """analytics.js (analytics-next) posts each call to a short route (``/v1/t``, ``/v1/p``,
    ``/v1/i``) as ``text/plain`` with its write key as Basic auth, and batches to ``/v1/b``, as the
    mobile libraries do; RudderStack's JavaScript SDK posts to ``/v1/page`` and ``/v1/identify``;
    Segment's older server libraries batch to ``/v1/import``. Shapes as analytics-next 1.84.3
    sent them."""
    settings = settings_for(broker.bootstrap)
    now = time.time()
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode(),
        "Content-Type": "text/plain",
    }

    def call(kind: str, message_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "messageId": message_id,
            "timestamp": _dt(now - 5).isoformat(),
            "anonymousId": "d05fcfb8-c223-4119-8893-f314b386da36",
            "context": {"library": {"name": "analytics.js", "version": "npm:next-1.84.3"}},
            "writeKey": TOKEN,
            **fields,
        }

    added = call(
        "track",
        "ajs-next-1",
        event="Product Added",
        properties={"cart_id": "c1", "product_id": "p1", "price": 5, "quantity": 2},
    )
    started = call("track", "ajs-next-2", event="Checkout Started", properties={"cart_id": "c1"})
    completed = call(
        "track",
        "ajs-next-3",
        event="Order Completed",
        properties={"order_id": "o1", "cart_id": "c1", "total": 10},
    )
    page = call("page", "ajs-next-4", properties={"path": "/p/1"})
    identify = call("identify", "ajs-next-5", userId="u1", traits={"name": "Jane"})
    posts = [
        ("/v1/t", added, 1),
        ("/v1/p", page, 0),
        ("/v1/i", identify, 0),
        ("/v1/page", page, 0),
        ("/v1/identify", identify, 0),
        ("/v1/b", {"batch": [started], "writeKey": TOKEN}, 1),
        ("/v1/import", {"batch": [completed]}, 1),
    ]
    with RunningCollector(settings) as collector, httpx.Client(base_url=collector.url) as http:
        for path, body, accepted in posts:
            answer = http.post(path, content=orjson.dumps(body), headers=headers)
            assert answer.status_code == 200, (path, answer.text)
            assert answer.json() == {
                "success": True,
                "accepted": accepted,
                "rejected": [],
                "ignored": 1 - accepted,
            }, path
        unknown = http.post("/v1/nope", content=b"{}", headers=headers)
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "not_found"
    records = by_topic(all_records(settings, 3))
    carts = [orjson.loads(r.value) for r in records[settings.topic("carts")]]
    assert [(e["event_type"], e["event_id"]) for e in carts] == [
        ("cart.item_added", "ajs-next-1"),
        ("checkout.started", "ajs-next-2"),
    ]
    (order,) = [orjson.loads(r.value) for r in records[settings.topic("orders")]]
    assert (order["event_type"], order["order_id"], order["cart_id"]) == (
        "order.placed",
        "o1",
        "c1",
    )


def test_an_item_that_grows_when_rewritten_is_dead_lettered_within_the_body_limit(broker):
    """A body within the limit whose one item grows when re-serialised (``1e5`` is written back
    as ``100000.0``): the item is rejected as too large and its dead letter is cut at the body
    limit, marked with its full size. (The embedded broker stores any size; Kafka refuses
    records past ``max.message.bytes``, 1 MB by default, which the 2.3 MB whole item is.)"""
    settings = settings_for(broker.bootstrap)
    limit = CollectorSettings.model_fields["max_body"].default  # 1 MiB
    item = {**survey(time.time() - 5, 9), "padding": []}
    filler = limit - len(orjson.dumps([item])) - 64
    item["padding"] = [1e5] * (filler // 4)
    body = orjson.dumps([item]).replace(b"100000.0", b"1e5")
    assert len(body) <= limit < 2 * len(orjson.dumps(item))
    with (
        RunningCollector(settings) as collector,
        httpx.Client(base_url=collector.url) as http,
    ):
        answer = http.post(
            "/v1/events",
            content=body,
            headers={**auth(), "Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        assert [r["reason"] for r in answer.json()["rejected"]] == ["too_large"]
    (dead,) = all_records(settings, 1)
    headers = dict(dead.headers)
    assert headers["cx.error.reason"] == b"too_large"
    assert int(headers["cx.error.truncated"]) == len(orjson.dumps(item)) > limit
    assert dead.value == orjson.dumps(item)[:limit]


def test_concurrent_requests_are_all_acked_and_every_event_lands_once(broker):
    """Many clients at once share partitions: each request is answered after its own acks."""
    settings = settings_for(broker.bootstrap)
    now = time.time()
    batches = [[survey(now - n, n % 11) for n in range(50)] for _ in range(40)]

    async def send_all(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post("/v1/events", json=batch, headers=auth()) for batch in batches)
            )
        return [answer.status_code for answer in answers]

    with RunningCollector(settings, rate_burst=100) as collector:
        assert asyncio.run(send_all(collector.url)) == [200] * len(batches)
        assert collector.sample("cx_collector_events_accepted_total", topic="surveys") == 2000
    records = consume_all(broker.bootstrap, settings.topic("surveys"), 2000)
    sent = sorted(e["event_id"] for batch in batches for e in batch)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == sent


# --- refusals produce nothing -------------------------------------------------------------


def test_every_bad_request_gets_its_status_and_produces_nothing(broker):
    settings = settings_for(broker.bootstrap)
    now = time.time()
    event = survey(now, 10)
    collector_settings = {"max_body": 4096, "max_events": 5, "rate_limit": 0.2, "rate_burst": 10}
    with (
        RunningCollector(settings, **collector_settings) as collector,
        httpx.Client(base_url=collector.url) as http,
    ):
        body = orjson.dumps([event])
        basic_with_password = httpx.BasicAuth(TOKEN, "secret")
        cases = [
            (http.post("/v1/events", content=body), 401),
            (http.post("/v1/events", content=body, headers={"Authorization": "Bearer nope"}), 401),
            (http.post("/v1/batch", content=body, auth=basic_with_password), 401),
            (http.post("/v1/events", content=b"{oops", headers=auth()), 400),
            (http.post("/v1/events", content=orjson.dumps(event), headers=auth()), 400),
            (http.post("/v1/batch", content=b"[]", headers=auth()), 400),
            (http.post("/v1/events", content=b"[" + b" " * 5000 + b"]", headers=auth()), 413),
            (
                http.post(
                    "/v1/events",
                    content=gzip.compress(b"[" + b" " * 10_000_000 + b"]"),
                    headers={**auth(), "Content-Encoding": "gzip"},
                ),
                413,
            ),
            (http.post("/v1/events", content=orjson.dumps([event] * 6), headers=auth()), 413),
            (
                http.post("/v1/events", content=body, headers={**auth(), "Content-Encoding": "br"}),
                415,
            ),
        ]
        for answer, status in cases:
            assert answer.status_code == status, (status, answer.text)
            assert TOKEN not in answer.text
        # 7 authenticated requests so far on TOKEN: a burst of 10 leaves 3
        statuses = [http.post("/v1/events", content=b"[]", headers=auth()) for _ in range(4)]
        assert [s.status_code for s in statuses] == [200, 200, 200, 429]
        assert int(statuses[-1].headers["Retry-After"]) >= 1
        # the limit is per token: another token is not affected
        marker = survey(now, 8)
        answer = http.post(
            "/v1/events", json=[marker], headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
        )
        assert answer.status_code == 200
        metrics_text = http.get("/metrics").text
    (only,) = all_records(settings, 1)
    assert orjson.loads(only.value)["event_id"] == marker["event_id"]
    assert TOKEN not in metrics_text and OTHER_TOKEN not in metrics_text
    for reason, count in {
        "unauthorized": 3,
        "bad_json": 1,
        "not_an_array": 1,
        "not_an_object": 1,
        "too_large": 2,
        "too_many_events": 1,
        "unsupported_encoding": 1,
        "rate_limited": 1,
    }.items():
        assert collector.sample("cx_collector_refused_requests_total", reason=reason) == count


def test_slow_body_gets_408_and_a_silent_connection_is_closed(broker):
    settings = settings_for(broker.bootstrap)
    with RunningCollector(settings, read_timeout=1.0, idle_timeout=1.0) as collector:
        host, port = collector.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + b"\r\nContent-Length: 100\r\n\r\n[ "
            )
            started = time.monotonic()
            answer = slow.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert time.monotonic() - started < 5
        with socket.create_connection((host, int(port)), timeout=10) as dribbler:
            dribbler.sendall(b"POST /v1/events HTTP/1.1\r\nHost:")
            started = time.monotonic()
            assert dribbler.recv(4096) == b""  # closed by the server
            assert time.monotonic() - started < 5


def test_cors_preflight_for_configured_origins_only(broker):
    settings = settings_for(broker.bootstrap)
    shop = "https://shop.example"
    with (
        RunningCollector(settings, cors_origins=shop) as collector,
        httpx.Client(base_url=collector.url) as http,
    ):
        preflight = {
            "Access-Control-Request-Method": "POST",
            # SDK headers: RudderStack's JavaScript SDK sends AnonymousId with every request and
            # Rsa-Retry-Attempt on retries, analytics.js X-Retry-Count on retries
            "Access-Control-Request-Headers": (
                "authorization,content-type,anonymousid,rsa-retry-attempt,x-retry-count"
            ),
        }
        for path in ("/v1/events", "/v1/track", "/v1/t", "/v1/batch", "/v1/page"):
            allowed = http.options(path, headers={"Origin": shop, **preflight})
            assert allowed.status_code == 200, (path, allowed.text)
            assert allowed.headers["Access-Control-Allow-Origin"] == shop
            allowed_headers = allowed.headers["Access-Control-Allow-Headers"].lower()
            for header in ("authorization", "anonymousid", "rsa-retry-attempt", "x-retry-count"):
                assert header in allowed_headers, (path, header)
        refused = http.options(
            "/v1/events", headers={"Origin": "https://evil.example", **preflight}
        )
        assert refused.status_code == 403
        assert "Access-Control-Allow-Origin" not in refused.headers
        answer = http.post("/v1/events", content=b"[]", headers={"Origin": shop, **auth()})
        assert answer.headers["Access-Control-Allow-Origin"] == shop


def test_a_full_buffer_answers_503_with_retry_after_and_produces_nothing(broker):
    settings = settings_for(broker.bootstrap)
    now = time.time()
    with (
        RunningCollector(settings, max_pending_events=10) as collector,
        httpx.Client(base_url=collector.url) as http,
    ):
        too_many = http.post("/v1/events", json=[survey(now, 1)] * 11, headers=auth())
        assert too_many.status_code == 503
        assert too_many.headers["Retry-After"] == "5"
        fits = [survey(now, 2) for _ in range(10)]
        assert http.post("/v1/events", json=fits, headers=auth()).status_code == 200
        assert collector.sample("cx_collector_refused_requests_total", reason="buffer_full") == 1
    assert len(all_records(settings, 10)) == 10


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["reset", "blackhole"])
def test_broker_outage_answers_503_produces_nothing_and_recovers_by_itself(
    tmp_path, style: FaultStyle
):
    with (
        TcpProxy() as proxy,
        EmbeddedBroker(log_path=tmp_path / "tansu.log", advertised_port=proxy.port) as own,
    ):
        proxy.upstream = (own.host, own.port)
        settings = settings_for(proxy.address)
        now = time.time()
        with (
            RunningCollector(settings, produce_timeout=2.0, retry_after=3) as collector,
            httpx.Client(base_url=collector.url, timeout=30) as http,
        ):
            assert http.post("/v1/events", json=[survey(now, 9)], headers=auth()).status_code == 200
            proxy.cut(style)
            wait_for(lambda: http.get("/healthz").status_code == 503, 20, "healthz to turn 503")
            lost = http.post("/v1/events", json=[survey(now, 1)], headers=auth())
            assert lost.status_code == 503
            assert lost.headers["Retry-After"] == "3"
            proxy.restore()
            wait_for(lambda: http.get("/healthz").status_code == 200, 30, "healthz to recover")
            retried = http.post("/v1/events", json=[survey(now, 7)], headers=auth())
            assert retried.status_code == 200, retried.text
            refused = collector.sample(
                "cx_collector_refused_requests_total", reason="broker_unavailable"
            )
            assert refused >= 1
        scores = sorted(orjson.loads(r.value)["score"] for r in all_records(settings, 2))
        assert scores == [7, 9]


def test_sigterm_finishes_in_flight_requests_and_loses_nothing_acked(broker, tmp_path):
    settings = settings_for(broker.bootstrap)
    env = {
        **os.environ,
        "CX_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CX_TOPIC_PREFIX": settings.topic_prefix,
        "CX_APP_ID": settings.app_id,
        "CX_SOURCE_PARTITIONS": "4",
        "CX_COLLECTOR_TOKENS": TOKEN,
        "CX_COLLECTOR_PORT": "0",
    }
    log = (tmp_path / "collector.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.collector"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=Path(__file__).parents[2],
    )
    try:
        url = process.stdout.readline().decode().strip()  # type: ignore[union-attr]
        assert url.startswith("http://"), url
        acked: list[str] = []
        stop = threading.Event()

        def send() -> None:
            now = time.time()
            with httpx.Client(base_url=url, timeout=30) as http:
                while not stop.is_set():
                    batch = [survey(now, n % 11) for n in range(200)]
                    try:
                        answer = http.post("/v1/events", json=batch, headers=auth())
                    except httpx.TransportError:
                        return  # the server is gone: nothing was acked for this batch
                    if answer.status_code == 200:
                        acked.extend(e["event_id"] for e in batch)

        senders = [threading.Thread(target=send) for _ in range(3)]
        for sender in senders:
            sender.start()
        wait_for(lambda: len(acked) >= 2000, 30, "some acked batches")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        stop.set()
        for sender in senders:
            sender.join(30)
        produced = consume_all(broker.bootstrap, settings.topic("surveys"), len(acked), 30)
        ids = {orjson.loads(r.value)["event_id"] for r in produced}
        assert set(acked) <= ids
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


# --- the numbers -------------------------------------------------------------------------


def segment_message(event: dict) -> dict | None:
    """The Segment track call a storefront would make for a contract cart/order event."""
    kind = event["event_type"]
    props: dict[str, Any] = {"channel": event.get("channel", "web")}
    if kind == "cart.item_added":
        name = "Product Added"
        props |= {k: event[k] for k in ("cart_id", "product_id", "quantity", "currency")}
        props["price"] = event["unit_price"]
    elif kind == "checkout.started":
        name, props["cart_id"] = "Checkout Started", event["cart_id"]
    elif kind == "checkout.step_completed":
        name = "Checkout Step Completed"
        props |= {"cart_id": event["cart_id"], "step_name": event["step"]}
    elif kind == "order.placed":
        name = "Order Completed"
        props |= {"order_id": event["order_id"], "total": event["total"]}
        props["currency"] = event["currency"]
        if event.get("cart_id"):
            props["cart_id"] = event["cart_id"]
    else:
        return None
    return {"event": name, "properties": props, "message_id": event["event_id"]}


def test_metrics_from_segment_sdk_and_events_endpoint_equal_the_oracle(broker, tmp_path):
    pipeline = Pipeline(broker.bootstrap)
    settings = settings_for(broker.bootstrap, pipeline.prefix)
    try:
        worker = pipeline.start_worker(tmp_path)
        now = time.time()
        orders_first, cart_events = cart_story(now)
        carts = orders_first + cart_events
        surveys = [survey(now - 30 * n, n % 11, "web" if n % 2 else "email") for n in range(40)]
        with RunningCollector(settings) as collector:
            client = SegmentClient(write_key=TOKEN, host=collector.url, sync_mode=True)
            for event in carts:
                call = segment_message(event)
                assert call is not None, event["event_type"]
                client.track(
                    event.get("customer_id") or "anonymous-shopper",
                    call["event"],
                    call["properties"],
                    timestamp=_dt(epoch(event["occurred_at"])),
                    message_id=call["message_id"],
                )
            with httpx.Client(base_url=collector.url) as http:
                answer = http.post("/v1/events", json=surveys, headers=auth())
                assert answer.json()["accepted"] == len(surveys)
        sent = carts + surveys

        def matches() -> bool:
            at = time.time()
            want = {
                **cart_expectations(carts, at, WINDOWS),
                **survey_expectations(sent, at, WINDOWS),
            }
            got = cx_samples(worker.samples(), CART_METRICS + SURVEY_METRICS)
            return set(got) == set(want) and all(
                got[key] == pytest.approx(value) for key, value in want.items()
            )

        wait_for(matches, 90, "metrics equal to the oracle")
    finally:
        pipeline.stop()
