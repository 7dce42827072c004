"""HttpSink against a real local aiohttp server: batching, retry on 503/429, stop on 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web

from pipeline.tools.simulate import CollectorRefused, HttpSink, SimEvent
from pipeline.tools.simulate.http_sink import events_url


def sim_events(count: int) -> list[SimEvent]:
    return [
        SimEvent("surveys", f"r{n}", {"event_id": f"e{n}", "event_type": "survey.submitted"}, 0.0)
        for n in range(count)
    ]


Answer = Callable[[int, list], web.Response]


@pytest.fixture
async def server() -> AsyncIterator[tuple[list, Callable[[Answer], str]]]:
    """A /v1/events endpoint whose answer per request the test decides; records every body."""
    received: list[tuple[str, list]] = []
    runners: list[web.AppRunner] = []

    async def start(answer: Answer) -> str:
        async def handle(request: web.Request) -> web.Response:
            body = orjson.loads(await request.read())
            received.append((request.headers.get("Authorization", ""), body))
            return answer(len(received), body)

        app = web.Application()
        app.router.add_post("/v1/events", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = next(iter(runner.addresses))[1]
        return f"http://127.0.0.1:{port}"

    yield received, start
    for runner in runners:
        await runner.cleanup()


def ok(_: int, body: list) -> web.Response:
    return web.json_response({"accepted": len(body), "rejected": []})


async def test_batches_carry_the_bearer_token_and_every_event_once(server):
    received, start = server
    url = await start(ok)
    async with HttpSink(url, "tok-1", batch=4) as sink:
        assert await sink.send_events(sim_events(10)) == 10
    assert [len(body) for _, body in received] == [4, 4, 2]
    assert {auth for auth, _ in received} == {"Bearer tok-1"}
    ids = [event["event_id"] for _, body in received for event in body]
    assert ids == [f"e{n}" for n in range(10)]
    assert sink.accepted == 10


async def test_503_and_429_are_retried_with_the_same_batch(server):
    received, start = server

    def busy_twice(nth: int, body: list) -> web.Response:
        if nth == 1:
            return web.json_response({"error": "broker"}, status=503, headers={"Retry-After": "0"})
        if nth == 2:
            return web.json_response({"error": "slow"}, status=429, headers={"Retry-After": "0"})
        return ok(nth, body)

    url = await start(busy_twice)
    async with HttpSink(url, "t", batch=100) as sink:
        assert await sink.send_events(sim_events(3)) == 3
    assert len(received) == 3 and received[0][1] == received[2][1]
    assert sink.accepted == 3


async def test_rejections_are_counted_by_reason(server):
    _, start = server

    def reject_first(_: int, body: list) -> web.Response:
        rejected = [{"index": 0, "reason": "validation", "detail": "x"}]
        return web.json_response({"accepted": len(body) - 1, "rejected": rejected})

    url = await start(reject_first)
    async with HttpSink(url, "t") as sink:
        await sink.send_events(sim_events(5))
    assert (sink.accepted, dict(sink.rejected)) == (4, {"validation": 1})


@pytest.mark.parametrize("status", [400, 401, 413])
async def test_a_refusal_that_cannot_succeed_stops_at_once(server, status):
    received, start = server
    url = await start(lambda *_: web.json_response({"error": "no"}, status=status))
    async with HttpSink(url, "t", attempts=5) as sink:
        with pytest.raises(CollectorRefused, match=f"HTTP {status}"):
            await sink.send_events(sim_events(2))
    assert len(received) == 1


async def test_gives_up_after_its_attempts():
    async with HttpSink("http://127.0.0.1:1", "t", attempts=2, max_wait=0.01) as sink:
        with pytest.raises(CollectorRefused, match="2 attempts"):
            await sink.send_events(sim_events(1))


def test_events_url():
    assert events_url("http://c:8088") == "http://c:8088/v1/events"
    assert events_url("http://c:8088/") == "http://c:8088/v1/events"
    assert events_url("http://c:8088/v1/events") == "http://c:8088/v1/events"
