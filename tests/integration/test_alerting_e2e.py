"""Live dashboards and TTR-spike alerts, end to end with the real Prometheus and Alertmanager.

simulated shop -> embedded broker -> worker -> Prometheus (the shipped rules, `for:` shortened)
-> Alertmanager (the shipped routes and inhibitions) -> a webhook served by the test; and every
query of the Grafana dashboard (deploy/grafana/build_dashboard.py) against that Prometheus.

The tests share one stack (``alerting_stack`` in alerting_support.py, which explains the day of
history, the backfilled TTR histogram, the business-hours SLA policy and the SLA spike the shop
is in) and run in file order: the TTR spike test comes last because its TTR alerts stay firing
for the rest of the module. The SLA spike's alerts fire from the start; only they may.
"""

from __future__ import annotations

import math
import time

import pytest

from pipeline.tools.simulate import TICKET_CHANNEL_WEIGHTS
from tests.deploy.deploy_support import load_dashboard_builder
from tests.integration.alerting_support import (
    SLA_SPIKE_ALERTS,
    TTR_ALERTS,
    AlertingStack,
    PromQLError,
    alerting_stack_fixture,  # noqa: F401  (the module-scoped fixture `alerting_stack`)
    ticket_spike,
    wait_until,
)

pytestmark = pytest.mark.integration

HIGH, SPIKE = TTR_ALERTS
AT_RISK = "CXUrgentTicketsAtRisk"
TICKET_CHANNELS = tuple(TICKET_CHANNEL_WEIGHTS)  # the channels the simulator opens tickets on


DASHBOARD = load_dashboard_builder()


def finite_samples(result: list[dict]) -> list[dict]:
    return [s for s in result if math.isfinite(float(s["value"][1]))]


def alert_keys(alerts: list[dict]) -> set[tuple[str, str | None]]:
    return {(a["labels"]["alertname"], a["labels"].get("channel")) for a in alerts}


def unexplained(alerts: list[dict]) -> list[dict]:
    """Alerts other than those of the SLA spike the shop is in (see alerting_support.py)."""
    return [a for a in alerts if a["labels"]["alertname"] not in SLA_SPIKE_ALERTS]


# --- dashboard --------------------------------------------------------------------------------
# $channel as Grafana sends it: All, one channel, a multi-value selection.
CHANNEL_SELECTIONS = (".*", "web", "(chat|email)")
# Windows whose every query must return data for "All" channels. 24h spans the simulated day;
# 1h is a busy shop hour (the simulator's local time is pinned to 14:00). 5m is only checked for
# valid PromQL: with ~5 events a second a 5 minute window legitimately misses whole families.
DATA_WINDOWS = ("24h", "1h")
# (panel title, metric of the query) -> windows in which an empty result is legitimate on a
# healthy pipeline with this traffic (~1 event/s): reopens (~3 an hour) and refunds (~2 an hour)
# are rare events. Rejected, duplicate and late events would be empty on a clean pipeline too,
# so the fixture injects one of each instead of allow-listing them.
ALLOW_EMPTY: dict[tuple[str, str], frozenset[str]] = {
    ("Tickets resolved / reopened", "cx_tickets_reopened"): frozenset({"1h"}),
    ("Refunds by currency", "cx_refunds{"): frozenset({"1h"}),
    ("Refunds by currency", "cx_refunded_amount"): frozenset({"1h"}),
}


OTHER_SERVICES_ROWS = ("HTTP intake", "Signals & actions")
"""Rows of the collector and `cxpipe act`, which this worker-only stack does not run; their queries
are still checked as PromQL here and against promtool-tested rules in tests/deploy."""
CONDITIONAL_PANELS: dict[str, str] = {
    "Misplaced records per second by topic": "the stack produces with murmur2, the canonical placement",
}
"""Worker panels that are empty by design in this stack, each with why."""


def not_in_this_stack(title: str) -> bool:
    rows = [row for row in DASHBOARD.ROWS if row.title in OTHER_SERVICES_ROWS]
    return title in CONDITIONAL_PANELS or any(p.title == title for r in rows for p in r.panels)


def allowed_empty(title: str, expr: str, window: str) -> bool:
    if not_in_this_stack(title):
        return True
    return any(
        title == panel and metric in expr and window in windows
        for (panel, metric), windows in ALLOW_EMPTY.items()
    )


def test_dashboard_queries_return_data(alerting_stack: AlertingStack):
    prometheus = alerting_stack.prometheus
    queries = DASHBOARD.panel_queries()
    assert len(queries) >= 30, "the dashboard lost its panels?"
    assert len(ALLOW_EMPTY) <= 4, "the allow-list of empty panels must stay small"
    for (title, metric), _ in ALLOW_EMPTY.items():
        assert any(t == title and metric in e for t, e in queries), f"stale allow-list: {title}"

    # Valid PromQL for every variable combination Grafana can send (and the annotations).
    invalid = []
    for channel in CHANNEL_SELECTIONS:
        for window in DASHBOARD.WINDOWS:
            for title, expr in DASHBOARD.panel_queries(channel, window):
                try:
                    prometheus.query(expr)
                except PromQLError as error:
                    invalid.append(f"{title} [{channel}, {window}]: {error}")
    for name, expr in DASHBOARD.annotation_queries():
        try:
            prometheus.query(expr)
        except PromQLError as error:
            invalid.append(f"annotation {name}: {error}")
    assert not invalid, "invalid dashboard queries:\n" + "\n".join(invalid)

    # Data: every query, except the allow-list, has a finite sample (NaN is not data: 0 / 0).
    empty: list[str] = []

    def all_have_data() -> bool:
        empty.clear()
        for window in DATA_WINDOWS:
            for title, expr in DASHBOARD.panel_queries(".*", window):
                if not allowed_empty(title, expr, window) and not finite_samples(
                    prometheus.query(expr)
                ):
                    empty.append(f"{title} [{window}]: {expr}")
        return not empty

    wait_until(
        all_have_data,
        60,
        "every dashboard query to return data",
        interval=1.0,
        diagnostics=lambda: "queries without data:\n" + "\n".join(empty),
    )

    by_title = dict(DASHBOARD.panel_queries(".*", "24h"))
    # process_* metrics come from Prometheus and Alertmanager too: only the worker may show.
    for title in ("Worker CPU", "Worker memory"):
        instances = {s["metric"].get("instance") for s in prometheus.query(by_title[title])}
        assert instances == {alerting_stack.instance}, f"{title}: {instances}"
    # The TTR panel reads the backfilled day: a normal p90 on both lines, below the red line.
    ttr = [expr for title, expr in DASHBOARD.panel_queries(".*", "24h") if title.startswith("TTR")]
    for expr in ttr:
        (sample,) = prometheus.query(expr)
        assert 60 < float(sample["value"][1]) < DASHBOARD.TTR_HIGH_SECONDS, (expr, sample)


# --- silence ------------------------------------------------------------------------------------
OBSERVE_SECONDS = 45.0  # of rule evaluation (every 1 s) since Prometheus started


def test_normal_traffic_stays_silent(alerting_stack: AlertingStack):
    """Nothing goes pending but the SLA spike's alerts (tested in the next test)."""
    stack = alerting_stack
    if stack.spiked:
        pytest.fail("the TTR spike was already injected into this module's stack: run in order")
    prometheus = stack.prometheus
    sent_before = stack.traffic.sent
    ttr_seen: set[tuple[str, str | None, str]] = set()
    firing_seen: set[tuple[str, str | None]] = set()

    def observed_long_enough() -> bool:
        stack.traffic.check()
        for alert in unexplained(prometheus.cx_alerts()):
            key = (alert["labels"]["alertname"], alert["labels"].get("channel"))
            if key[0] in TTR_ALERTS:
                ttr_seen.add((*key, alert["state"]))
            if alert["state"] == "firing":
                firing_seen.add(key)
        rules = [rule for group in prometheus.rule_groups() for rule in group["rules"]]
        unhealthy = [(r["name"], r["health"], r.get("lastError")) for r in rules]
        unhealthy = [r for r in unhealthy if r[1] != "ok"]
        # every group, the 1-minute 24h-baseline one included, has been evaluated at least once
        return time.time() - prometheus.started_at >= OBSERVE_SECONDS and not unhealthy

    wait_until(
        observed_long_enough,
        OBSERVE_SECONDS + 90,
        f"{OBSERVE_SECONDS:.0f}s of evaluation with every rule healthy",
        interval=1.0,
        diagnostics=stack.diagnostics,
    )
    assert not ttr_seen, f"TTR alerts on normal traffic: {sorted(ttr_seen)}\n{stack.diagnostics()}"
    assert not firing_seen, f"alerts fired on normal traffic: {sorted(firing_seen)}"
    assert unexplained(prometheus.cx_alerts()) == [], f"alerts at the end: {stack.diagnostics()}"
    assert unexplained([a for _, a in stack.webhook.alerts()]) == [], stack.diagnostics()
    assert unexplained(stack.alertmanager.alerts()) == []

    # ... and not because nothing was evaluated: traffic flowed and the TTR rules have values.
    assert stack.traffic.sent > sent_before, "no live traffic during the observation"
    assert (prometheus.value("cx:events:increase10m") or 0) > 0
    assert prometheus.value("cx:pipeline_workers_up:sum") == 1
    baselines = prometheus.values("cx:ttr_seconds_by_channel:p90_24h")
    assert {dict(labels)["channel"] for labels in baselines} == set(TICKET_CHANNELS), baselines
    assert all(60 < v < 28800 for v in baselines.values()), baselines
    recent = prometheus.values("cx:ttr_seconds_by_channel:p90_15m")
    assert any(math.isfinite(v) for v in recent.values()), recent
    assert all(v <= 28800 for v in recent.values() if math.isfinite(v)), recent
    assert (prometheus.value("cx:ticket_resolutions:increase15m") or 0) > 0


# --- the SLA spike ----------------------------------------------------------------------------
def test_urgent_tickets_at_risk_page_through_alertmanager(alerting_stack: AlertingStack):
    """The shop's SLA spike: urgent first responses at risk page; the breaches open tickets."""
    stack = alerting_stack
    prometheus, webhook = stack.prometheus, stack.webhook

    # The premise, from the worker's own scrape: >= 5 urgent tickets due within the hour.
    def urgent_at_risk() -> dict[str, float]:
        at_risk: dict[str, float] = {}
        for (name, labels), value in stack.worker.samples().items():
            labels = dict(labels)
            if name == "cx_tickets_at_risk_by_priority" and labels["priority"] == "urgent":
                at_risk[labels["kind"]] = at_risk.get(labels["kind"], 0.0) + value
        return at_risk

    at_risk = urgent_at_risk()
    assert at_risk.get("first_response", 0) >= 5, at_risk
    assert at_risk.get("resolution", 0) < 5, at_risk  # the spike is an hour old: 4 h targets

    # Prometheus: the alert fires for the first response only, at the worker's count.
    wait_until(
        lambda: (AT_RISK, None) in alert_keys(prometheus.cx_alerts("firing")),
        90,
        f"{AT_RISK} firing in Prometheus",
        interval=0.5,
        diagnostics=stack.diagnostics,
    )
    (alert,) = [a for a in prometheus.cx_alerts() if a["labels"]["alertname"] == AT_RISK]
    assert alert["labels"]["kind"] == "first_response"
    assert alert["labels"]["severity"] == "critical"
    assert float(alert["value"]) >= 5

    # Alertmanager -> webhook: a page with the runbook.
    def paged() -> list:
        return [
            (note, a)
            for note, a in webhook.alerts(AT_RISK)
            if a["status"] == "firing" and a["labels"].get("kind") == "first_response"
        ]

    note, page = wait_until(paged, 60, f"the {AT_RISK} page", diagnostics=stack.diagnostics)[0]
    assert note.path == "/pager" and note.payload["receiver"] == "cx-pager"
    assert note.payload["groupLabels"] == {"alertname": AT_RISK}
    assert "urgent tickets" in page["annotations"]["summary"], page["annotations"]
    assert "first_response" in page["annotations"]["summary"], page["annotations"]
    assert "Tickets at risk of breaching" in page["annotations"]["runbook"], page["annotations"]

    # The breaches the spike already caused (first responses, the last 45 min): warnings.
    attainment = prometheus.value('cx:sla_attainment_by_kind:ratio_1h{kind="first_response"}')
    assert attainment is not None and attainment < 0.8, attainment
    assert (prometheus.value("cx:sla_breached:1h") or 0) >= 10
    warnings = {"CXSlaAttainmentLow": "/ticket", "CXSlaBreachesRising": "/ticket"}
    for alertname, path in warnings.items():
        ticket_note, ticket = wait_until(
            lambda name=alertname: [
                (n, a) for n, a in webhook.alerts(name) if a["status"] == "firing"
            ],
            90,
            f"the {alertname} ticket",
            diagnostics=stack.diagnostics,
        )[0]
        assert ticket_note.path == path and ticket["labels"]["severity"] == "warning", ticket
        assert ticket["annotations"]["runbook"], ticket
    low = {a["labels"]["kind"] for _, a in webhook.alerts("CXSlaAttainmentLow")}
    assert low == {"first_response"}, low
    assert unexplained([a for _, a in webhook.alerts()]) == [], stack.diagnostics()


# --- the TTR spike ----------------------------------------------------------------------------
SPIKE_TICKETS = 12  # per channel: >= 10, the Spike alert's volume guard
# chat: 7 h, in the (4 h, 8 h] histogram bucket: more than twice the ~1.4 h baseline p90 but
# under the 8 h limit -> CXTicketResolutionTimeSpike only (warning -> receiver cx-ticket).
CHAT_TTR = 7 * 3600.0
# email: 12 h, above the 8 h limit -> CXTicketResolutionTimeHigh (critical -> cx-pager) and
# CXTicketResolutionTimeSpike, which Alertmanager inhibits (same channel).
EMAIL_TTR = 12 * 3600.0
CHAT_BUCKET_FLOOR = 14400.0  # lower edge of the bucket the chat spike lands in


def test_ttr_spike_pages_through_alertmanager(alerting_stack: AlertingStack):
    stack = alerting_stack
    prometheus, alertmanager, webhook = stack.prometheus, stack.alertmanager, stack.webhook

    # The premise: a recorded 24h baseline well below half the chat spike, and no TTR alert.
    def baselines() -> dict[str, float] | None:
        values = {
            channel: prometheus.value(f'cx:ttr_seconds_by_channel:p90_24h{{channel="{channel}"}}')
            for channel in ("chat", "email")
        }
        return values if all(v is not None for v in values.values()) else None

    baseline = wait_until(baselines, 90, "the 24h TTR baseline", diagnostics=stack.diagnostics)
    assert all(2 * v < CHAT_BUCKET_FLOOR for v in baseline.values()), baseline
    assert not [a for a in prometheus.cx_alerts() if a["labels"]["alertname"] in TTR_ALERTS]

    stack.spiked = True
    stack.produce(
        ticket_spike("chat", SPIKE_TICKETS, CHAT_TTR, time.time())
        + ticket_spike("email", SPIKE_TICKETS, EMAIL_TTR, time.time())
    )
    injected = time.monotonic()

    # Prometheus: the alerts go pending, then firing.
    wanted = {(HIGH, "email"), (SPIKE, "email"), (SPIKE, "chat")}
    wait_until(
        lambda: wanted <= alert_keys(prometheus.cx_alerts("firing")),
        90,
        f"{sorted(wanted)} firing in Prometheus",
        interval=0.5,
        diagnostics=stack.diagnostics,
    )
    fired_after = time.monotonic() - injected
    alerts = {
        (a["labels"]["alertname"], a["labels"].get("channel")): a for a in prometheus.cx_alerts()
    }
    assert (HIGH, "chat") not in alerts, "7 h is under the 8 h limit: no High on chat"
    assert alerts[(HIGH, "email")]["labels"]["severity"] == "critical"
    assert alerts[(SPIKE, "chat")]["labels"]["severity"] == "warning"
    p90_chat = prometheus.value('cx:ttr_seconds_by_channel:p90_15m{channel="chat"}')
    assert p90_chat is not None and CHAT_BUCKET_FLOOR < p90_chat <= 28800, p90_chat
    p90_email = prometheus.value('cx:ttr_seconds_by_channel:p90_15m{channel="email"}')
    assert p90_email is not None and p90_email > 28800, p90_email

    # Alertmanager -> webhook: the page for email, the ticket for chat.
    def delivered(alertname: str, channel: str):
        return [
            (note, alert)
            for note, alert in webhook.alerts(alertname)
            if alert["status"] == "firing" and alert["labels"].get("channel") == channel
        ]

    page_note, page = wait_until(
        lambda: delivered(HIGH, "email"), 60, "the High page", diagnostics=stack.diagnostics
    )[0]
    assert page_note.path == "/pager" and page_note.payload["receiver"] == "cx-pager"
    assert page["labels"]["alertname"] == HIGH and page["labels"]["severity"] == "critical"
    assert page_note.payload["groupLabels"] == {"alertname": HIGH, "channel": "email"}
    assert "email" in page["annotations"]["summary"] and page["annotations"]["runbook"]

    ticket_note, ticket = wait_until(
        lambda: delivered(SPIKE, "chat"), 60, "the Spike ticket", diagnostics=stack.diagnostics
    )[0]
    assert ticket_note.path == "/ticket" and ticket_note.payload["receiver"] == "cx-ticket"
    assert ticket["labels"]["alertname"] == SPIKE and ticket["labels"]["severity"] == "warning"
    # the description queries the 24h baseline from the alert template
    description = ticket["annotations"]["description"]
    assert "24-hour p90 of" in description and "error" not in description.lower(), description
    assert ticket["annotations"]["runbook"]

    # Inhibition: the email Spike reaches Alertmanager but is suppressed by the email High ...
    def suppressed() -> list[dict]:
        return [
            a
            for a in alertmanager.alerts(alertname=SPIKE, channel="email")
            if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
        ]

    wait_until(suppressed, 60, "the email Spike inhibited", diagnostics=stack.diagnostics)
    # ... and never delivered, also not at the next group intervals (1 s) after that.
    until = time.monotonic() + 3.0
    while time.monotonic() < until:
        assert not delivered(SPIKE, "email"), stack.diagnostics()
        time.sleep(0.2)
    # No other alert was sent: only the two TTR alerts that should page / ticket (and the SLA
    # spike's alerts, sent before).
    sent = alert_keys(unexplained([a for _, a in webhook.alerts()]))
    assert sent == {(HIGH, "email"), (SPIKE, "chat")}, sent

    # The dashboard's annotation query shows them.
    ((_, annotation),) = DASHBOARD.annotation_queries()
    annotated = {
        (s["metric"]["alertname"], s["metric"].get("channel")) for s in prometheus.query(annotation)
    }
    assert wanted <= annotated, annotated
    print(f"TTR alerts firing in Prometheus {fired_after:.1f}s after the spike was produced")
