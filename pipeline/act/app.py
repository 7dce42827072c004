"""The Faust app of `cxpipe act`: agents that turn `cx.signals` into webhook calls.

Shape (built by `build_app`, nothing happens at import):
- `route` reads `cx.signals` (keyed by entity), dead-letters records that are not valid signals,
  and re-keys the configured types by customer onto an internal topic, so every table below is
  partitioned like the stream that writes it (Faust's table-sharding rule) and a customer's cap
  lives in one partition whichever carts, tickets or orders its signals came from.
- one `deliver-<webhook>` agent per webhook reads that topic with its own stream, so a slow or
  failing webhook delays only itself; each has two tables: `done` (signal_id -> delivered or
  dead-lettered at) and `caps` (customer -> the signal that holds the frequency cap, and when).

Crash safety (SIGKILL at any instruction). Faust commits a source offset only after flushing the
producer, and every state write below is awaited until the broker acknowledged it, in this
order: (1) the cap claim, (2) the HTTP delivery or the dead letter, (3) the `done` mark. So:
- a cap is on the changelog before the webhook is called: after a restart it is never forgotten;
  the claim names its signal, so the re-processed signal itself is not capped by it;
- nothing is lost: an offset is committed only after (3), and (3) only after (2);
- a signal is POSTed twice only if the process dies between the webhook's 2xx and the broker's
  ack of (3), a window of one changelog round trip; the retry carries the same
  `Idempotency-Key` (= signal_id) for the receiver to drop. A re-sent signal_id (the pipeline
  may repeat one after its own crash) finds (3) and is skipped for `dedupe_horizon`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
import faust
import orjson
from pydantic import ValidationError

from pipeline.act.config import Actions, SignalActions, Webhook
from pipeline.act.delivery import deliver
from pipeline.act.metrics import ActMetrics
from pipeline.act.policy import Decision, cap_key, decide
from pipeline.act.rewind import install as install_rewind
from pipeline.settings import Settings
from schemas.signals import DEAD_LETTER_TOPIC, SIGNAL_ADAPTER, TOPIC, Signal

log = logging.getLogger(__name__)

NO_CAP: dict[str, Any] = {"at": 0.0, "signal_id": ""}
"""A released cap claim: older than any period, held by no signal."""


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust configuration derived from the pipeline settings (see research/faust.md)."""
    assert settings.bootstrap_servers, "act needs a broker"
    return {
        "broker": [f"kafka://{host.strip()}" for host in settings.bootstrap_servers.split(",")],
        "store": "memory://",
        "web_enabled": False,
        "topic_disable_leader": True,
        "table_standby_replicas": 0,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": settings.session_timeout / 3,
        "broker_commit_interval": 1.0,
        "topic_partitions": settings.source_partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
    }


async def durable_set(table: Any, key: str, value: dict[str, Any]) -> None:
    """`table[key] = value`, returning only once the changelog record is acknowledged.

    The plain `table[key] = value` only queues the changelog write; a SIGKILL could then lose
    it while the HTTP call it guards has already happened.
    """
    table.data[key] = value
    await table.send_changelog(table.partition_for_key(key), key, value)


def error_headers(reason: str, detail: str, **extra: str) -> dict[str, bytes]:
    headers = {"cx.error.reason": reason, "cx.error.detail": detail[:500]}
    headers.update({f"cx.error.{name}": value for name, value in extra.items()})
    return {name: value.encode() for name, value in headers.items()}


def build_app(settings: Settings, actions: Actions, metrics: ActMetrics, datadir: str) -> faust.App:
    """The `act` Faust app for `actions` (one agent per webhook)."""
    install_rewind()  # see pipeline/act/rewind.py: otherwise a restart may skip signals
    app = faust.App(f"{settings.app_id}-act", datadir=datadir, **faust_settings(settings))
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    signals = app.topic(settings.topic(TOPIC), **raw)
    dead_letter = app.topic(settings.topic(DEAD_LETTER_TOPIC), **raw)
    by_customer = app.topic(f"{app.conf.id}-signals-by-customer", internal=True, **raw)

    async def to_dead_letter(key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        await (await dead_letter.send(key=key, value=value, headers=headers))

    @app.agent(signals, name="route")
    async def route(stream: faust.StreamT) -> None:
        async for event in stream.events():
            value = event.value or b""
            try:
                signal = SIGNAL_ADAPTER.validate_python(orjson.loads(value))
            except (orjson.JSONDecodeError, ValidationError) as exc:
                metrics.rejected.inc()
                detail = str(exc).splitlines()[0]
                await to_dead_letter(event.key, value, error_headers("invalid_signal", detail))
                continue
            if signal.signal_type in actions.signals:
                key = (signal.customer_id or signal.entity_id).encode()
                await (await by_customer.send(key=key, value=value))

    for signal_type, signal_actions in actions.signals.items():
        for hook in signal_actions.webhooks:
            _add_webhook_agent(
                app,
                by_customer,
                signal_type,
                signal_actions,
                hook,
                actions,
                metrics,
                to_dead_letter,
            )
    return app


def _add_webhook_agent(
    app: faust.App,
    source: faust.TopicT,
    signal_type: str,
    signal_actions: SignalActions,
    hook: Webhook,
    actions: Actions,
    metrics: ActMetrics,
    to_dead_letter: Any,
) -> None:
    done = app.Table(f"act-done-{hook.name}")
    caps = app.Table(f"act-caps-{hook.name}")
    policy = actions.delivery
    labels = {"signal_type": signal_type, "webhook": hook.name}

    async def handle(session: aiohttp.ClientSession, key: bytes | None, value: bytes) -> None:
        signal: Signal = SIGNAL_ADAPTER.validate_python(orjson.loads(value))
        if signal.signal_type != signal_type:
            return
        customer = cap_key(signal)
        now = time.time()
        decision = decide(
            signal,
            hook,
            now=now,
            frequency_cap=signal_actions.frequency_cap,
            dedupe_horizon=policy.dedupe_horizon,
            done=done.get(signal.signal_id),
            cap=caps.get(customer) if customer else None,
        )
        if decision is not Decision.DELIVER:
            metrics.skipped.labels(**labels, decision=decision.value).inc()
            return
        claimed = signal_actions.frequency_cap is not None and customer is not None
        previous = caps.get(customer, NO_CAP) if claimed else NO_CAP
        if claimed:
            await durable_set(caps, customer, {"at": now, "signal_id": signal.signal_id})
        outcome = await deliver(
            session,
            hook,
            value,
            signal.signal_id,
            policy,
            on_retry=lambda reason: metrics.retried.labels(**labels, reason=reason).inc(),
        )
        if not outcome.delivered:
            headers = error_headers(
                outcome.reason or "",
                outcome.detail,
                webhook=hook.name,
                attempts=str(outcome.attempts),
            )
            await to_dead_letter(signal.entity_id.encode(), value, headers)
            if claimed:  # the customer got nothing, so the cap is not used up
                await durable_set(caps, customer, previous)
        outcome_name = "delivered" if outcome.delivered else "dead_letter"
        await durable_set(done, signal.signal_id, {"at": time.time(), "outcome": outcome_name})
        # counted once the outcome is durable, so a counted delivery is never POSTed again
        if outcome.delivered:
            metrics.delivered.labels(**labels).inc()
            metrics.latency.labels(signal_type=signal_type).observe(time.time() - signal.ts)
        else:
            metrics.failed.labels(**labels, reason=outcome.reason).inc()

    async def agent(stream: faust.StreamT) -> None:
        async with aiohttp.ClientSession() as session:
            async for event in stream.events():
                await handle(session, event.key, event.value)

    # concurrency 1: Faust agents that write tables must not run concurrently (faust.md §5)
    app.agent(source, name=f"deliver-{hook.name}", concurrency=1)(agent)
