"""``cxpipe``: the one console script (worker, broker, emit, simulate, demo, schemas)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from contextlib import AsyncExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from pipeline.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
schemas_app = typer.Typer(no_args_is_help=True, help="The event contract as JSON Schema.")
app.add_typer(schemas_app, name="schemas")
sla_app = typer.Typer(no_args_is_help=True, help="SLA policies (CX_SLA_POLICY).")
app.add_typer(sla_app, name="sla")

Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="Kafka bootstrap servers; default CX_BOOTSTRAP_SERVERS, else embedded Tansu.",
    ),
]
MetricsPort = Annotated[
    int | None, typer.Option("--metrics-port", help="Port of /metrics (CX_METRICS_PORT).")
]
SlaSpikeOption = Annotated[
    str | None,
    typer.Option(
        "--sla-spike",
        help="A wave of urgent tickets answered too late (at risk, then breached), e.g. 20m or "
        "+1m,30m:10x (10x the urgent rate).",
    ),
]


def load_settings(**overrides: Any) -> Settings:
    """Environment first, explicit CLI options on top; a bad value stops the command (exit 2)
    with one line per problem, naming its variable, instead of a traceback."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            where = "CX_" + str(problem["loc"][0]).upper() if problem["loc"] else "settings"
            message = str(problem["msg"]).removeprefix("Value error, ")
            typer.echo(f"cxpipe: bad configuration: {where}: {message}", err=True)
        raise typer.Exit(2) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def refuse_bad_sla_policy(settings: Settings) -> None:
    """Stop the start (exit 2) with the loader's file:line message if the policy is unusable."""
    from pipeline.domain.sla_policy import PolicyError
    from pipeline.worker.handlers import sla_policy

    try:
        sla_policy(settings)
    except PolicyError as error:
        typer.echo(f"cxpipe: bad SLA policy (CX_SLA_POLICY): {error}", err=True)
        raise typer.Exit(2) from None


EMBEDDED_SESSION_TIMEOUT = 2.0
"""Seconds; a group join on the embedded broker then takes 1 s (below 1 s groups turn unstable)."""


class BrokerDied(RuntimeError):
    pass


async def with_broker(stack: AsyncExitStack, settings: Settings, console: Any = None) -> Settings:
    """Settings pointing at a broker: the configured one, or an embedded Tansu we own."""
    from pipeline.kafka.broker import EmbeddedBroker, wait_until_ready

    if settings.bootstrap_servers:
        await wait_until_ready(settings.bootstrap_servers, timeout=30)
        return settings
    broker = EmbeddedBroker()
    await broker.astart()
    stack.push_async_callback(broker.astop)
    stack.enter_context(_broker_watch(broker))
    update: dict[str, Any] = {"bootstrap_servers": broker.bootstrap}
    if "session_timeout" not in settings.model_fields_set:
        # Tansu makes a group join take half the session timeout; Kafka's 6 s floor does not apply
        update["session_timeout"] = EMBEDDED_SESSION_TIMEOUT
    return settings.model_copy(update=update)


_broker_deaths: list[str] = []
"""What :class:`_broker_watch` saw; read by :func:`run_async` even when a shutdown step on the
way out replaced the cancellation (and its message) with one of its own."""


class _broker_watch:
    """Cancels the main task with BrokerDied if the embedded broker process exits."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.task: asyncio.Task[None] | None = None

    def __enter__(self) -> _broker_watch:
        main = asyncio.current_task()

        async def watch() -> None:
            while self.broker.returncode() is None:
                await asyncio.sleep(0.2)
            message = f"embedded broker exited with code {self.broker.returncode()}"
            _broker_deaths.append(message)
            if main is not None:
                main.cancel(message)

        self.task = asyncio.get_running_loop().create_task(watch())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()


def run_async(main: Any) -> None:
    """Run ``main`` with Ctrl-C/SIGTERM mapped to a clean cancel; broker death -> exit 1."""

    async def runner() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: task.cancel("signal") if task else None)
        await main

    try:
        asyncio.run(runner())
    except asyncio.CancelledError:
        pass
    except BrokerDied as died:
        typer.echo(f"cxpipe: {died}", err=True)
        raise typer.Exit(1) from None
    if _broker_deaths:
        typer.echo(f"cxpipe: {_broker_deaths[-1]}; stopping.", err=True)
        raise typer.Exit(1)


@app.command()
def worker(bootstrap: Bootstrap = None, metrics_port: MetricsPort = None) -> None:
    """Run a pipeline worker (ingest + whole-shop view + /metrics)."""
    from pipeline.worker.service import Worker

    settings = load_settings(bootstrap_servers=bootstrap, metrics_port=metrics_port)
    setup_logging(settings.log_level)
    refuse_bad_sla_policy(settings)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            live = await with_broker(stack, settings)
            if not settings.bootstrap_servers:
                typer.echo(f"embedded broker: {live.bootstrap_servers}", err=True)
            await Worker(live).run()

    run_async(main())


@app.command()
def collect(
    bootstrap: Bootstrap = None,
    host: Annotated[str | None, typer.Option("--host", help="CX_COLLECTOR_HOST")] = None,
    port: Annotated[int | None, typer.Option("--port", help="CX_COLLECTOR_PORT")] = None,
) -> None:
    """Run the HTTP collector (CONTRACT.md "HTTP intake"); embedded broker without --bootstrap."""
    from pydantic import ValidationError

    from pipeline.collector import CollectorSettings, run_collector

    settings = load_settings(bootstrap_servers=bootstrap)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        collector = CollectorSettings(**overrides)
    except ValidationError as error:
        typer.echo(f"cxpipe collect: bad configuration: {error}", err=True)
        raise typer.Exit(2) from None
    setup_logging(settings.log_level)

    async def serve() -> None:
        async with AsyncExitStack() as stack:
            live = await with_broker(stack, settings)
            await run_collector(
                live, collector, ready=lambda url: typer.echo(f"collector: {url}", err=True)
            )

    run_async(serve())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def act(ctx: typer.Context) -> None:
    """Deliver cx.signals to HTTP webhooks (Faust): --actions FILE (CX_ACTIONS), --bootstrap."""
    from pipeline.act.__main__ import main as act_main

    raise typer.Exit(act_main(ctx.args))


@app.command()
def broker() -> None:
    """Run the embedded Tansu broker alone and print its bootstrap address."""
    settings = load_settings()
    setup_logging(settings.log_level)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            live = await with_broker(stack, settings.model_copy(update={"bootstrap_servers": None}))
            typer.echo(live.bootstrap_servers)
            sys.stdout.flush()
            await asyncio.Event().wait()

    run_async(main())


@app.command()
def emit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, one event per line.")
    ],
    bootstrap: Bootstrap = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Produce the valid lines even if some are not.")
    ] = False,
) -> None:
    """Validate every line of FILE and produce it to its topic with the contract's key."""
    from pipeline.tools.emit import emit_file

    settings = load_settings(bootstrap_servers=bootstrap)
    setup_logging(settings.log_level)
    if not settings.bootstrap_servers:
        typer.echo("cxpipe emit: no broker; pass --bootstrap or set CX_BOOTSTRAP_SERVERS", err=True)
        raise typer.Exit(2)
    result: dict[str, int] = {}

    async def main() -> None:
        result.update(await emit_file(settings, file, skip_invalid=skip_invalid, report=typer.echo))

    run_async(main())
    typer.echo(
        f"produced {result.get('produced', 0)}, invalid {result.get('invalid', 0)}", err=True
    )
    if result.get("invalid"):
        raise typer.Exit(1)


class Via(StrEnum):
    """Where `cxpipe simulate` sends its traffic."""

    kafka = "kafka"
    http = "http"


@app.command()
def simulate(
    url: Annotated[
        str | None,
        typer.Argument(
            help="With --via http: the collector's base URL, e.g. http://localhost:8088."
        ),
    ] = None,
    rate: Annotated[float, typer.Option(help="Average events per second.")] = 50.0,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: forever).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible traffic.")] = None,
    ttr_spike: Annotated[
        str | None,
        typer.Option("--ttr-spike", help="Inject slow resolutions, e.g. 10m or +2m,10m:5x."),
    ] = None,
    sla_spike: SlaSpikeOption = None,
    via: Annotated[
        Via,
        typer.Option(help="kafka: produce directly; http: POST batches to the collector at URL."),
    ] = Via.kafka,
    token: Annotated[
        str | None,
        typer.Option(help="Collector token for --via http; default: first of CX_COLLECTOR_TOKENS."),
    ] = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Produce realistic shop traffic (carts, orders, tickets, surveys) in real time."""
    settings = load_settings(bootstrap_servers=bootstrap)
    setup_logging(settings.log_level)
    options: dict[str, Any] = {
        "rate": rate,
        "duration": duration,
        "seed": seed,
        **spikes("simulate", ttr_spike, sla_spike),
    }
    if via is Via.http:
        if url is None:
            fail(
                "cxpipe simulate: --via http needs the collector's URL, e.g. http://localhost:8088"
            )
        run_async(_simulate_http(url, token or _first_collector_token(), options))
    else:
        if url is not None:
            fail(f"cxpipe simulate: {url!r} is only used with --via http")
        if not settings.bootstrap_servers:
            fail("cxpipe simulate: no broker; pass --bootstrap or set CX_BOOTSTRAP_SERVERS")
        run_async(_simulate_kafka(settings, options))


def spikes(command: str, ttr_spike: str | None, sla_spike: str | None) -> dict[str, Any]:
    """``--ttr-spike`` and ``--sla-spike`` parsed from now, as ``run_live`` options; a bad one
    exits with the parser's message."""
    import time

    from pipeline.tools.simulate import parse_sla_spike, parse_ttr_spike

    now = time.time()
    parsed: dict[str, Any] = {}
    for option, text, parse in (
        ("ttr_spike", ttr_spike, parse_ttr_spike),
        ("sla_spike", sla_spike, parse_sla_spike),
    ):
        try:
            parsed[option] = None if text is None else parse(text, now)
        except ValueError as problem:
            fail(f"cxpipe {command}: --{option.replace('_', '-')}: {problem}")
    return parsed


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _first_collector_token() -> str:
    """The token the collector itself would accept first (CX_COLLECTOR_TOKENS)."""
    from pydantic import ValidationError

    from pipeline.collector import CollectorSettings

    try:
        return CollectorSettings().token_list[0]
    except ValidationError as error:
        fail(f"cxpipe simulate: no collector token: pass --token ({error.errors()[0]['msg']})")


async def _simulate_kafka(settings: Settings, options: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer

    from pipeline.tools.simulate import run_live

    producer = AIOKafkaProducer(**settings.kafka_client_options(), linger_ms=20)
    await producer.start()
    try:
        sent = await run_live(producer, topic_prefix=settings.topic_prefix, **options)
        typer.echo(f"produced {sent} events", err=True)
    finally:
        await producer.stop()


async def _simulate_http(url: str, token: str, options: dict[str, Any]) -> None:
    from pipeline.tools.simulate import CollectorRefused, HttpSink, run_live

    async with HttpSink(url, token) as sink:
        try:
            await run_live(sink, **options)
        except CollectorRefused as refused:
            fail(f"cxpipe simulate: {refused}", 1)
        finally:
            rejected = ", ".join(f"{n} {reason}" for reason, n in sink.rejected.most_common())
            typer.echo(
                f"sent via {sink.url}: {sink.accepted} accepted, "
                f"{sum(sink.rejected.values())} rejected{f' ({rejected})' if rejected else ''}",
                err=True,
            )


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 50.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    ttr_spike: Annotated[
        str | None,
        typer.Option("--ttr-spike", help="Slow resolutions to watch, e.g. +1m,10m:6x."),
    ] = None,
    sla_spike: SlaSpikeOption = None,
    window: Annotated[
        str | None,
        typer.Option(help="Window shown first, e.g. 5m, 1h, 24h (key w cycles them)."),
    ] = None,
    bootstrap: Bootstrap = None,
    metrics_port: MetricsPort = None,
    live_view: Annotated[
        bool,
        typer.Option(
            "--live/--no-live",
            help="Full-screen view on a terminal, a text summary every 5 s into a pipe.",
        ),
    ] = True,
    history: Annotated[
        float, typer.Option(help="Seconds of past traffic produced first, so windows start filled.")
    ] = 3600.0,
) -> None:
    """Broker + worker + simulator in one command, with a live view of every metric."""
    started = time.time()
    from pipeline.tools.demo import demo_settings, run_demo, window_names

    settings = demo_settings(load_settings(bootstrap_servers=bootstrap, metrics_port=metrics_port))
    setup_logging("WARNING" if live_view else settings.log_level)
    if window is not None and window not in window_names(settings):
        typer.echo(
            f"cxpipe demo: --window {window!r} is not a configured window "
            f"(CX_WINDOWS: {', '.join(window_names(settings))})",
            err=True,
        )
        raise typer.Exit(2)
    spikes("demo", ttr_spike, sla_spike)  # checked now, parsed again once the stack runs
    refuse_bad_sla_policy(settings)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            live = await with_broker(stack, settings)
            await run_demo(
                live,
                rate=rate,
                duration=duration,
                ttr_spike=ttr_spike,
                sla_spike=sla_spike,
                live_view=live_view,
                history=history,
                window=window,
                started=started,
            )

    run_async(main())


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Benchmark: raw aiokafka ceiling vs the pipeline vs a naive Faust agent (see --help)."""
    from bench.run import main as run_bench

    raise typer.Exit(run_bench(list(ctx.args)))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def soak(ctx: typer.Context) -> None:
    """Soak: simulated days through one worker on an accelerated clock; RSS per hour (see --help)."""
    from bench.soak import main as run_soak

    raise typer.Exit(run_soak(list(ctx.args)))


@schemas_app.command("export")
def schemas_export(directory: Annotated[Path, typer.Argument(help="Output directory.")]) -> None:
    """Write the JSON Schema files of the event contract to DIRECTORY."""
    from schemas import export_json_schemas

    for path in export_json_schemas(directory):
        typer.echo(str(path))


@sla_app.command("check")
def sla_check(policy: Annotated[Path, typer.Argument(help="The SLA policy file (YAML).")]) -> None:
    """Validate an SLA policy without starting anything; print what it means."""
    from pipeline.domain.sla_policy import PolicyError, check_policy_file

    try:
        typer.echo(check_policy_file(policy))
    except PolicyError as error:
        typer.echo(f"cxpipe sla check: {error}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
