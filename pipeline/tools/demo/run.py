"""The demo's loop: a worker, the HTTP collector, a reader of the signals and the shop simulator
in this process, and the view refreshed.

Three ways to show it, picked from where stdout goes: a full-screen rich view on a terminal,
a plain text summary every few seconds into a pipe or file (``| tee demo.log`` stays readable),
or nothing with ``--no-live``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client.core import Metric
from rich.console import Console
from rich.live import Live

from pipeline.aggregates.windows import format_window
from pipeline.collector import CollectorMetrics, CollectorSettings, run_collector
from pipeline.http.view_metrics import ViewCollector
from pipeline.kafka.clients import bounded_shutdown
from pipeline.settings import Settings
from pipeline.tools.demo.intake import (
    DEMO_HTTP_SHARE,
    SplitSink,
    curl_example,
    demo_collector_settings,
)
from pipeline.tools.demo.keys import key_commands
from pipeline.tools.demo.render import plain_summary, render_view
from pipeline.tools.demo.screen import DemoScreen
from pipeline.tools.demo.signal_reader import SignalReader
from pipeline.tools.demo.signals import SignalTally
from pipeline.tools.demo.view_model import Section
from pipeline.tools.simulate import (
    HttpSink,
    SlaSpike,
    TtrSpike,
    parse_sla_spike,
    parse_ttr_spike,
    run_live,
)
from pipeline.worker.service import Worker

REFRESH = 1.0
"""Seconds between two refreshes of the live view (each one is a /metrics collection)."""
PLAIN_EVERY = 5.0
"""Seconds between two plain summaries when stdout is not a terminal."""
DEMO_TTR_MEDIAN = 180.0
"""Median ticket resolution time (s) of the demo's shop; the simulator's default is 2 h.

A TTR can only be as long as the simulated history, and a slow ticket of a spike must open
``factor x TTR`` before it resolves (:class:`~pipeline.tools.simulate.TtrSpike`): with a 2 h
median and an hour of history every TTR is cut off at the history and a 6x spike moves p90 by
~1.25x. With 3 min (p90 ~11 min) most slowed tickets (6x: p90 ~40 min) fit in an hour.
"""
DEMO_RAMP_FULL = 300.0
DEMO_RAMP_HALF_LIFE = 180.0
"""The demo's history is a growing shop (:class:`~pipeline.tools.simulate.simulator.Ramp`): the
live rate over its last 5 minutes, half of it 3 minutes before, a quarter 6 minutes before...
About 38 000 events instead of 260 000 for an evening hour at 50/s, so every section has
numbers within seconds (4.6-5.5 s, against 7.9 s with 10 full minutes). Tickets are not
thinned: their slow ones still open up to an hour back, and the 24h TTR baseline stays whole."""
DEMO_ORDER_TIME_SCALE = 1 / 288
"""An order's life in the demo's shop, shrunk: a day's delivery promise becomes 5 minutes, so
deliveries (and late ones) fill the 5m window within seconds of an hour of history."""


DEMO_LOCAL_HOUR = 10.0
"""The demo's shop has the same time of day whenever it runs: its local time now is 10:00
(traffic ~1.1x the day's mean). On UTC time, at 01:00 UTC it ran at half the mean: its 5m
window held so few resolutions that the calm demo's TTR p90 crossed the spike alert's threshold
(the demo-view test failed 4 of 10 runs). At its 20:00 peak a 6x TTR spike moved p90 only ~2.9x
within two minutes (2 of 10); at 10:00, 10 of 10 passed."""


DEMO_WORKER_SETTINGS = {"abandonment_timeout": 300.0, "quiet_period": 1.0}
"""The demo's worker decides faster than the defaults (30 min, 5 s), unless the environment
sets them: a cart idle for 5 minutes is abandoned, so abandonment comes from the full-rate end
of the history (with 30 min it would come from its thin start: a few percent instead of ~55 %),
and a cart's decision waits 1 s without events (the history arrives as one burst: 5 s would
hold every cart decision until 5 s after it)."""


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with :data:`DEMO_WORKER_SETTINGS` where the environment left them unset."""
    unset = {k: v for k, v in DEMO_WORKER_SETTINGS.items() if k not in settings.model_fields_set}
    return settings.model_copy(update=unset)


class DemoStack:
    """A worker, the HTTP collector, a signals reader and the simulator producing into the
    topics (``http_share`` of its entities through the collector), started and stopped
    together. ``collector`` defaults to ``CX_COLLECTOR_*`` with a random token."""

    def __init__(
        self,
        settings: Settings,
        *,
        rate: float,
        duration: float | None,
        history: float,
        spike: TtrSpike | None = None,
        sla_spike: SlaSpike | None = None,
        seed: int | None = None,
        ttr_median: float = DEMO_TTR_MEDIAN,
        collector: CollectorSettings | None = None,
        http_share: float = DEMO_HTTP_SHARE,
        order_time_scale: float = DEMO_ORDER_TIME_SCALE,
        ramp_half_life: float | None = DEMO_RAMP_HALF_LIFE,
        ramp_full: float = DEMO_RAMP_FULL,
        started: float | None = None,
        local_hour: float = DEMO_LOCAL_HOUR,
    ) -> None:
        self.settings = settings
        self.worker = Worker(settings)
        self.spike = spike
        self.sla_spike = sla_spike
        self.sent = 0
        self.started = time.time() if started is None else started
        """When the demo started (the command, if it says so): "all sections live after"."""
        self.collector = collector if collector is not None else demo_collector_settings()
        self.collector_metrics = CollectorMetrics()
        self.collector_url = ""
        self.signals = SignalTally()
        self.http_share = http_share
        self._simulation = dict(
            rate=rate,
            duration=duration,
            history=history,
            seed=seed,
            ttr_median=ttr_median,
            order_time_scale=order_time_scale,
            ramp_half_life=ramp_half_life,
            ramp_full=ramp_full,
            utc_offset_hours=local_hour - self.started % 86_400 / 3600,
        )
        self._producer: AIOKafkaProducer | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._collector_task: asyncio.Task[None] | None = None
        self._reader: SignalReader | None = None
        self._http: HttpSink | None = None
        self._sink: SplitSink | None = None
        self._simulator: asyncio.Task[int] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.worker.server.port}/metrics"

    @property
    def token(self) -> str:
        """The token the demo's simulator posts with, and the one to show: the first one."""
        return self.collector.token_list[0]

    @property
    def via_http(self) -> int:
        """Simulated events the collector acknowledged (part of :attr:`sent`)."""
        return self._sink.via_http if self._sink is not None else 0

    def curl(self) -> str:
        return curl_example(self.collector_url, self.token)

    @property
    def windows(self) -> list[str]:
        return [spec.name for spec in self.worker.view.specs]

    def families(self) -> list[Metric]:
        """What a scrape of this worker's /metrics returns, as metric families: the health
        registry, then the view's families (the server renders those as text after it)."""
        view = ViewCollector(self.worker.view, self.worker.clock, self.worker.is_ready)
        return [
            *self.worker.health.registry.collect(),
            *view.collect(),
            *self.collector_metrics.registry.collect(),
        ]

    def sections(self, screen: DemoScreen, now: float) -> list[Section]:
        """One refresh of ``screen`` from this stack: its families and its signals."""
        return screen.refresh(self.families(), now, self.signals)

    def _tasks(self) -> tuple[asyncio.Task[Any] | None, ...]:
        reader = self._reader.task if self._reader is not None else None
        return (self._worker_task, self._collector_task, reader, self._simulator)

    def finished(self) -> bool:
        return any(task is not None and task.done() for task in self._tasks())

    async def __aenter__(self) -> DemoStack:
        try:
            return await self._start()
        except BaseException:
            await self.__aexit__()  # what did start is stopped: no task outlives a failed start
            raise

    async def _start(self) -> DemoStack:
        started = asyncio.Event()
        self._worker_task = asyncio.create_task(self.worker.run(started))
        await _first_of(started.wait(), self._worker_task)
        if self._worker_task.done():
            self._worker_task.result()  # the worker failed to start: say why
        self._reader = await SignalReader(self.settings, self.signals).__aenter__()
        await self._start_collector()
        self._producer = AIOKafkaProducer(**self.settings.kafka_client_options(), linger_ms=20)
        await self._producer.start()
        self._http = await HttpSink(self.collector_url, self.token).__aenter__()
        self._sink = SplitSink(
            self._producer, self._http, self.http_share, self.settings.topic_prefix
        )
        self._simulator = asyncio.create_task(
            run_live(
                self._sink,
                ttr_spike=self.spike,
                sla_spike=self.sla_spike,
                on_batch=self._count,
                **self._simulation,  # type: ignore[arg-type]
            )
        )
        return self

    async def _start_collector(self) -> None:
        listening = asyncio.Event()

        def ready(url: str) -> None:
            self.collector_url = url
            listening.set()

        self._collector_task = asyncio.create_task(
            run_collector(self.settings, self.collector, ready, self.collector_metrics)
        )
        await _first_of(listening.wait(), self._collector_task)
        if self._collector_task.done():
            self._collector_task.result()  # the collector failed to start (port taken...)

    async def wait(self) -> None:
        """Until the simulator's duration is over (or a part fails: then raise)."""
        assert self._simulator is not None
        await _first_of(*(task for task in self._tasks() if task is not None))
        self.raise_failure()

    def raise_failure(self) -> None:
        for task in self._tasks():
            if task is not None and task.done() and not task.cancelled():
                task.result()

    async def __aexit__(self, *exc: object) -> None:
        if self._simulator is not None:
            self._simulator.cancel()
            await asyncio.gather(self._simulator, return_exceptions=True)
        if self._http is not None:
            await self._http.__aexit__(None, None, None)
        if self._collector_task is not None:
            self._collector_task.cancel()
            await asyncio.gather(self._collector_task, return_exceptions=True)
        if self._reader is not None:
            await self._reader.__aexit__()
        self.worker.stop()
        if self._worker_task is not None:
            await asyncio.gather(self._worker_task, return_exceptions=True)
        if self._producer is not None:
            await bounded_shutdown(self._producer.stop())

    def _count(self, count: int) -> None:
        self.sent += count


def window_names(settings: Settings) -> list[str]:
    """The configured windows' labels, shortest first (``--window`` must be one of them)."""
    return [format_window(seconds) for seconds in settings.window_seconds]


def header(stack: DemoStack, screen: DemoScreen, keys: bool, now: float) -> str:
    parts = [
        f"cx-pipeline demo · window {screen.window}",
        f"metrics {stack.url}",
        f"simulated {stack.sent:,} events ({stack.via_http:,} via HTTP)",
        f"up {now - stack.started:.0f}s",
    ]
    parts += [spike_status(spike, now) for spike in (stack.spike, stack.sla_spike) if spike]
    if screen.live_at is not None:
        parts.append(f"all sections live after {screen.live_at - stack.started:.1f}s")
    else:
        parts.append("waiting for numbers: " + ", ".join(screen.waiting))
    if keys:
        parts.append("[w] window [q] quit")
    parts.append(f"collector {stack.collector_url} token {stack.token}")
    return " · ".join(parts)


def intro(stack: DemoStack) -> str:
    """Where to send events of one's own, with a command to paste."""
    return (
        f"HTTP collector: {stack.collector_url} (token {stack.token}); "
        "post an event of your own:\n" + stack.curl()
    )


def spike_status(spike: TtrSpike | SlaSpike, now: float) -> str:
    factor = f"{spike.name} {spike.factor:g}x"
    if now < spike.start:
        return f"{factor} in {spike.start - now:.0f}s"
    if now < spike.end:
        return f"{factor} ACTIVE ({spike.end - now:.0f}s left)"
    return f"{factor} over"


async def run_demo(
    settings: Settings,
    *,
    rate: float,
    duration: float | None,
    ttr_spike: str | None,
    live_view: bool,
    sla_spike: str | None = None,
    history: float = 0.0,
    window: str | None = None,
    console: Console | None = None,
    started: float | None = None,
) -> None:
    """Run the stack; show the view until ``duration`` is over, ``q`` or Ctrl-C.

    The collector's URL, token and a ready-to-paste ``curl`` are printed at start (and again
    at the end, since the full-screen view covers them), whatever the view.
    """
    console = console or Console()
    windows = window_names(settings)
    screen = DemoScreen.with_rule_file(windows, window or windows[0])
    now = time.time()
    async with DemoStack(
        settings,
        rate=rate,
        duration=duration,
        history=history,
        spike=parse_ttr_spike(ttr_spike, now) if ttr_spike else None,
        sla_spike=parse_sla_spike(sla_spike, now) if sla_spike else None,
        started=started,
    ) as stack:
        console.print(intro(stack), highlight=False, soft_wrap=True)
        if not live_view:
            await stack.wait()
        elif console.is_terminal:
            await _live(stack, screen, console)
        else:
            await _plain(stack, screen, console)
        stack.raise_failure()


async def _live(stack: DemoStack, screen: DemoScreen, console: Console) -> None:
    quit_requested = asyncio.Event()

    def on_key(char: str) -> None:
        if char in "wW":
            screen.next_window()
        elif char in "qQ":
            quit_requested.set()

    def frame(keys: bool) -> Any:
        now = time.time()
        sections = stack.sections(screen, now)
        return render_view(
            sections,
            screen.trends,
            width=console.width,
            header=header(stack, screen, keys, now),
            footer=screen.footer(),
        )

    with (
        key_commands(on_key) as keys,
        Live(console=console, screen=True, auto_refresh=False) as live,
    ):
        while not stack.finished() and not quit_requested.is_set():
            live.update(frame(keys), refresh=True)
            await _sleep_or(quit_requested, REFRESH)
    now = time.time()
    console.print(
        plain_summary(stack.sections(screen, now), header(stack, screen, False, now)),
        highlight=False,
        soft_wrap=True,
    )
    console.print(intro(stack), highlight=False, soft_wrap=True)


async def _plain(stack: DemoStack, screen: DemoScreen, console: Console) -> None:
    def summary() -> str:
        now = time.time()
        return plain_summary(stack.sections(screen, now), header(stack, screen, False, now))

    last = 0.0
    while not stack.finished():
        stack.sections(screen, time.time())  # keeps rates and trends sampled
        if time.monotonic() - last >= PLAIN_EVERY:
            last = time.monotonic()
            console.print(summary(), highlight=False, soft_wrap=True)
        await asyncio.sleep(REFRESH)
    console.print(summary(), highlight=False, soft_wrap=True)


async def _sleep_or(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _first_of(*aws: Any) -> None:
    tasks = [a if isinstance(a, asyncio.Future) else asyncio.ensure_future(a) for a in aws]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
