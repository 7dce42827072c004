"""``cxpipe demo``: a worker and the shop simulator on one broker, with a live terminal view."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.metrics import WindowReader
from pipeline.settings import Settings
from pipeline.tools.simulate import parse_ttr_spike, run_live
from pipeline.view import View
from pipeline.worker import Worker, bounded_shutdown

SURVEYS = ("nps", "csat", "ces")


def _sum(reader: WindowReader, name: str, labels: Iterable[tuple[str, ...]]) -> float | None:
    values = [reader.count(name, lb) for lb in labels]
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def headline(view: View, now: float) -> dict[str, dict[str, float | None]]:
    """Whole-shop (all channels) key numbers per window, for the terminal view."""
    rows: dict[str, dict[str, float | None]] = {}
    channels = sorted({lb[0] for lb in view.labels_of("survey_responses")})
    for spec in view.specs:
        read = WindowReader(view, spec, now)
        promoters = _sum(read, "nps", [(c, "promoter") for c in channels])
        passives = _sum(read, "nps", [(c, "passive") for c in channels])
        detractors = _sum(read, "nps", [(c, "detractor") for c in channels])
        answered = sum(v or 0 for v in (promoters, passives, detractors))
        csat_n = _sum(read, "survey_responses", [(c, "csat") for c in channels])
        ces_n = _sum(read, "survey_responses", [(c, "ces") for c in channels])
        rows[spec.name] = {
            "NPS": 100 * ((promoters or 0) - (detractors or 0)) / answered if answered else None,
            "CSAT": (_sum(read, "csat_satisfied", [(c,) for c in channels]) or 0) / csat_n
            if csat_n
            else None,
            "CES": (_sum(read, "ces_sum", [(c,) for c in channels]) or 0) / ces_n
            if ces_n
            else None,
            "surveys": _sum(read, "survey_responses", [(c, s) for c in channels for s in SURVEYS]),
        }
    return rows


def render(view: View, worker: Worker, url: str, sent: int, started: float) -> Table:
    now = time.time()
    rows = headline(view, now)
    columns = ["NPS", "CSAT", "CES", "surveys"]
    table = Table(
        title=f"cx-pipeline demo — metrics at {url}", caption=_caption(view, sent, started)
    )
    table.add_column("window")
    for column in columns:
        table.add_column(column, justify="right")
    formats = {"NPS": "{:+.1f}", "CSAT": "{:.1%}", "CES": "{:.2f}", "surveys": "{:,.0f}"}
    for window, values in rows.items():
        table.add_row(
            window,
            *[
                "—" if values[c] is None else formats[c].format(values[c])  # type: ignore[arg-type]
                for c in columns
            ],
        )
    if not worker.view_ready:
        table.add_row("(catching up)", *[""] * len(columns))
    return table


def _caption(view: View, sent: int, started: float) -> str:
    accepted = sum(amount for _, amount in view.totals_named("events"))
    rejected = sum(amount for _, amount in view.totals_named("rejected"))
    return f"simulated {sent:,} · accepted {accepted:,} · rejected {rejected:,} · up {time.time() - started:.0f}s"


async def run_demo(
    settings: Settings,
    *,
    rate: float,
    duration: float | None,
    ttr_spike: str | None,
    live_view: bool,
    history: float = 0.0,
) -> None:
    console = Console(stderr=True)
    started = time.time()
    worker = Worker(settings)
    worker_started = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(worker_started))
    await _first_of(worker_started.wait(), worker_task)
    url = f"http://{settings.metrics_host}:{worker.server.port}/metrics"
    console.print(f"[bold]cx-pipeline demo[/]: broker {settings.bootstrap_servers}, metrics {url}")
    producer = AIOKafkaProducer(**settings.kafka_client_options(), linger_ms=20)
    await producer.start()
    counter = {"sent": 0}
    spike = parse_ttr_spike(ttr_spike, time.time()) if ttr_spike else None

    def on_batch(count: int) -> None:
        counter["sent"] += count

    simulator = asyncio.create_task(
        run_live(
            producer,
            rate=rate,
            duration=duration,
            topic_prefix=settings.topic_prefix,
            ttr_spike=spike,
            on_batch=on_batch,
            history=history,
        )
    )
    try:
        if live_view:
            with Live(console=console, refresh_per_second=2) as live:
                while not _finished(simulator, worker_task):
                    live.update(render(worker.view, worker, url, counter["sent"], started))
                    await asyncio.sleep(0.5)
                live.update(render(worker.view, worker, url, counter["sent"], started))
        else:
            await _first_of(simulator, worker_task)
        if worker_task.done():
            worker_task.result()  # surface a worker failure
        await simulator
    finally:
        simulator.cancel()
        worker.stop()
        await asyncio.gather(worker_task, return_exceptions=True)
        await bounded_shutdown(producer.stop())


def _finished(*tasks: asyncio.Task[object]) -> bool:
    return any(task.done() for task in tasks)


async def _first_of(*aws: object) -> None:
    tasks = [a if isinstance(a, asyncio.Future) else asyncio.ensure_future(a) for a in aws]  # type: ignore[arg-type]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
