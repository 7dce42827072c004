"""Generate the Grafana dashboard deploy/grafana/dashboards/cx-overview.json.

    python deploy/grafana/build_dashboard.py           # rewrite the JSON
    python deploy/grafana/build_dashboard.py --check   # exit 1 if the JSON is out of date

Every panel and query lives in ``ROWS`` below; the JSON is derived from it (pure stdlib,
deterministic) and committed, and ``tests/deploy/test_dashboard.py`` regenerates and compares.

Query rules (see deploy/README.md):

* Every worker exports the WHOLE-SHOP value of every CX metric, so N workers are N identical
  copies: CX metrics are always read through ``max without (instance, pod) (...)`` (counters:
  ``max without (instance, pod) (rate(...))``), never summed across targets. Sums below run over
  channels, currencies, topics ... of ONE deduplicated copy.
* Per-worker pipeline metrics (``cx_pipeline_*``) differ per worker and are summed.
* The collector's (``cx_collector_*``) and act's (``cx_act_*``) metrics count each instance's
  own requests and deliveries, so they are summed over instances too.
* Queries use only scraped metrics, not the recording rules, so the dashboard also works on a
  Prometheus that does not load deploy/prometheus/rules.
* Template variables: ``$channel`` (multi-value regex, All = ``.*``) and ``$window`` (one of the
  pipeline's windows, ``5m``/``1h``/``24h``). :func:`panel_queries` returns every query with them
  substituted for tests that run the queries against a real Prometheus.
"""

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "cx-overview.json"

UID = "cx-overview"
TITLE = "CX overview"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

CHANNELS = ("web", "mobile_app", "store", "marketplace", "call_center", "chat", "email", "social")
WINDOWS = ("5m", "1h", "24h")
DEFAULT_WINDOW = "1h"

# Deduplication of the identical whole-shop copies exported by every worker.
DEDUP = "max without (instance, pod)"
CHANNEL = 'channel=~"$channel"'
WINDOW = 'window="$window"'

# Absolute TTR alert threshold (CXTicketResolutionTimeHigh), drawn on the TTR panel.
TTR_HIGH_SECONDS = 28800
URGENT_AT_RISK_LIMIT = 5
"""CXUrgentTicketsAtRisk's threshold (deploy/prometheus/rules/cx-alerts.yml)."""
DEAD_LETTER_RATIO_LIMIT = 0.05


# --- query helpers ----------------------------------------------------------------------------
def selector(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def cx(metric: str, *matchers: str, window: bool = True) -> str:
    """A CX gauge for the selected window and channels, one copy (deduplicated)."""
    scope = ([WINDOW] if window else []) + [CHANNEL]
    return f"{DEDUP} ({selector(metric, *scope, *matchers)})"


def cx_rate(metric: str, *matchers: str, range_: str = "5m") -> str:
    """Per-second rate of a whole-shop CX counter, one copy (rate first, then max)."""
    return f"{DEDUP} (rate({selector(metric, *matchers)}[{range_}]))"


def ttr_p90(range_: str) -> str:
    """p90 TTR of the selected channels from the histogram, as the TTR alerts compute it."""
    buckets = cx_rate("cx_ticket_resolution_seconds_bucket", CHANNEL, range_=range_)
    return f"histogram_quantile(0.9, sum by (le) ({buckets}))"


def weighted(score: str, survey: str) -> str:
    """Mean of a per-channel score weighted by its response count: the selection's score."""
    count = cx("cx_survey_responses", f'survey="{survey}"')
    return f"sum({score} * ignoring (survey) ({count} > 0)) / sum({count} > 0)"


def zero_if_absent(expr: str) -> str:
    return f"(sum({expr}) or vector(0))"


def dead_letter_ratio(range_: str) -> str:
    rejected = zero_if_absent(cx_rate("cx_events_rejected_total", range_=range_))
    accepted = zero_if_absent(cx_rate("cx_events_total", range_=range_))
    return f"{rejected} / ({rejected} + {accepted})"


def sla_attainment(by: str) -> str:
    """met / (met + breached) of the selection, per ``by``; no breach series counts as 0."""
    met = f"sum by ({by}) ({cx('cx_sla_met')})"
    breached = f"sum by ({by}) ({cx('cx_sla_breached')})"
    return f"{met} / ({met} + ({breached} or {met} * 0))"


def worker_only(expr: str) -> str:
    """Restrict a process_* metric to cx-pipeline workers (Prometheus exports them too)."""
    return f"({expr}) and on (job, instance) cx_pipeline_view_ready"


# --- per-process services (collector, act): each instance counts its own work, so SUM them ---
def per_second(metric: str, by: str, range_: str = "5m") -> str:
    """Per-second rate of a per-process counter, summed over the instances of the service."""
    return f"sum by ({by}) (rate({metric}[{range_}]))"


def latency_quantile(q: float, histogram: str, by: str = "le", range_: str = "5m") -> str:
    """Quantile of a per-process histogram over every instance (buckets summed first)."""
    return f"histogram_quantile({q}, {per_second(histogram + '_bucket', by, range_)})"


def share(part: str, whole: str) -> str:
    """part / whole, 0 when there is no part (no series) but some whole."""
    return f"(({part}) or ({whole}) * 0) / ({whole})"


INTAKE_5XX_SHARE_LIMIT = 0.05
INTAKE_REJECTED_SHARE_LIMIT = 0.05


# --- model --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    description: str
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 8
    min: float | None = None
    max: float | None = None
    stack: bool = False
    thresholds: tuple[tuple[float, str], ...] = ()
    threshold_line: bool = False
    decimals: int | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


# --- operations rows: the HTTP collector (cxpipe collect) and cxpipe act ------------------------
HTTP_INTAKE_ROW = Row(
    "HTTP intake",
    (
        Panel(
            "Intake requests per second by route and status",
            (
                q(
                    per_second("cx_collector_requests_total", "route, status"),
                    "{{route}} {{status}}",
                ),
            ),
            "HTTP requests answered by the collectors (cxpipe collect), summed over instances.",
            unit="reqps",
            stack=True,
        ),
        Panel(
            "Intake events per second",
            (
                q(per_second("cx_collector_events_accepted_total", "topic"), "accepted {{topic}}"),
                q(
                    per_second("cx_collector_events_rejected_total", "reason"),
                    "rejected {{reason}}",
                ),
                q(per_second("cx_collector_events_ignored_total", "reason"), "ignored {{reason}}"),
            ),
            "Events acked by Kafka per topic; events rejected (written to cx.dead-letter with "
            "cx.error.topic=http) and Segment messages ignored, by reason.",
            unit="ops",
        ),
        Panel(
            "Refused requests per second by reason",
            (q(per_second("cx_collector_refused_requests_total", "reason"), "{{reason}}"),),
            "Whole requests refused (nothing produced): unauthorized, rate_limited, too large, "
            "timeouts, broker unavailable or buffer full.",
            unit="reqps",
            stack=True,
        ),
        Panel(
            "Intake 5xx and rejected share (10m)",
            (
                q(
                    share(
                        'sum(rate(cx_collector_requests_total{status=~"5.."}[10m]))',
                        "sum(rate(cx_collector_requests_total[10m]))",
                    ),
                    "5xx / requests",
                ),
                q(
                    share(
                        "sum(rate(cx_collector_events_rejected_total[10m]))",
                        "sum(rate(cx_collector_events_rejected_total[10m])) + "
                        "sum(rate(cx_collector_events_accepted_total[10m]))",
                    ),
                    "rejected / events",
                ),
            ),
            "What CXCollectorServerErrorsHigh and CXCollectorRejectedShareHigh watch (each fires "
            "above 5%).",
            unit="percentunit",
            min=0,
            max=1,
            thresholds=((0, "green"), (INTAKE_5XX_SHARE_LIMIT, "red")),
            threshold_line=True,
        ),
        Panel(
            "Produce latency p50 / p99",
            (
                q(latency_quantile(0.5, "cx_collector_produce_seconds"), "p50"),
                q(latency_quantile(0.99, "cx_collector_produce_seconds"), "p99"),
            ),
            "From handing a request's events to Kafka until every ack (acks=all) arrived; the "
            "client's 200 waits for it.",
            unit="s",
        ),
        Panel(
            "Pending events and broker up",
            (
                q("sum(cx_collector_pending_events)", "pending events"),
                q("sum(cx_collector_broker_up)", "collectors reaching Kafka"),
                q("count(cx_collector_broker_up)", "collectors scraped"),
            ),
            "Events awaiting Kafka's acks (beyond CX_COLLECTOR_MAX_PENDING_EVENTS requests get "
            "503), and how many collectors reach the broker.",
            decimals=0,
        ),
    ),
)

SIGNALS_ROW = Row(
    "Signals & actions",
    (
        Panel(
            "Signals delivered per second by type",
            (q(per_second("cx_act_delivered_total", "signal_type"), "{{signal_type}}"),),
            "Signals cxpipe act delivered to a webhook (2xx), summed over act instances.",
            unit="ops",
            stack=True,
        ),
        Panel(
            "Delivery retries and failures by reason",
            (
                q(
                    per_second("cx_act_retried_total", "webhook, reason"),
                    "retry {{webhook}} {{reason}}",
                ),
                q(
                    per_second("cx_act_failed_total", "webhook, reason"),
                    "failed {{webhook}} {{reason}}",
                ),
                q("sum(rate(cx_act_rejected_total[5m]))", "invalid records on cx.signals"),
            ),
            "Retries (5xx, 408, 429, timeouts) and signals dead-lettered to "
            "cx.signals.dead-letter (4xx or retry budget spent), per webhook and reason.",
            unit="ops",
        ),
        Panel(
            "Signals skipped by decision",
            (q(per_second("cx_act_skipped_total", "decision"), "{{decision}}"),),
            "Not delivered on purpose: capped (frequency cap), stale (older than max_age), "
            "channel (filtered), duplicate (signal_id already delivered).",
            unit="ops",
            stack=True,
        ),
        Panel(
            "Delivery latency p90 by type",
            (
                q(
                    latency_quantile(0.9, "cx_act_delivery_latency_seconds", "le, signal_type"),
                    "{{signal_type}}",
                ),
            ),
            "From the signal's occurred_at (the fact) to its delivery; cart signals start at "
            "the abandonment timeout, backfills show as hours.",
            unit="s",
        ),
    ),
)


ROWS: tuple[Row, ...] = (
    Row(
        "Voice of customer",
        (
            Panel(
                "NPS (selected channels)",
                (
                    q(
                        "100 * ("
                        + zero_if_absent(cx("cx_nps_responses", 'category="promoter"'))
                        + " - "
                        + zero_if_absent(cx("cx_nps_responses", 'category="detractor"'))
                        + f") / sum({cx('cx_nps_responses')})",
                        "NPS",
                    ),
                ),
                "Net promoter score of the selected channels over $window, from the response "
                "counts: 100 x (promoters - detractors) / responses.",
                kind="stat",
                width=6,
                min=-100,
                max=100,
                decimals=1,
                thresholds=((-100, "red"), (0, "yellow"), (30, "green")),
            ),
            Panel(
                "CSAT (selected channels)",
                (q(weighted(cx("cx_csat_ratio"), "csat"), "CSAT"),),
                "Share of CSAT responses scoring 4 or 5 over $window, weighted over the "
                "selected channels.",
                unit="percentunit",
                kind="stat",
                width=6,
                min=0,
                max=1,
                thresholds=((0, "red"), (0.7, "yellow"), (0.85, "green")),
            ),
            Panel(
                "CES (selected channels)",
                (q(weighted(cx("cx_ces_score"), "ces"), "CES"),),
                "Mean customer effort score (1-7) over $window, weighted over the selected "
                "channels.",
                kind="stat",
                width=6,
                min=1,
                max=7,
                decimals=2,
            ),
            Panel(
                "Survey responses",
                (q(f"sum by (survey) ({cx('cx_survey_responses')})", "{{survey}}"),),
                "Survey responses in the last $window, by survey, selected channels.",
                kind="stat",
                width=6,
            ),
            Panel(
                "NPS by channel",
                (q(cx("cx_nps_score"), "{{channel}}"),),
                "NPS per channel over $window (-100..100). No value: no NPS response in the "
                "window.",
                min=-100,
                max=100,
            ),
            Panel(
                "CSAT by channel",
                (q(cx("cx_csat_ratio"), "{{channel}}"),),
                "CSAT per channel over $window (share of 4-5 scores).",
                unit="percentunit",
                min=0,
                max=1,
            ),
            Panel(
                "CES by channel",
                (q(cx("cx_ces_score"), "{{channel}}"),),
                "Mean customer effort score per channel over $window (1 = effortless).",
                min=1,
                max=7,
            ),
            Panel(
                "NPS responses by category",
                (q(f"sum by (category) ({cx('cx_nps_responses')})", "{{category}}"),),
                "Promoters, passives and detractors in the last $window, selected channels.",
                width=24,
                stack=True,
            ),
        ),
    ),
    Row(
        "Support",
        (
            Panel(
                "Time to resolution by channel",
                (q(cx("cx_ttr_seconds"), "{{channel}} p{{quantile}}"),),
                "TTR quantiles (0.5, 0.9, 0.99) of tickets first resolved in the last $window, "
                "per channel.",
                unit="s",
                width=12,
            ),
            Panel(
                "TTR p90: 15m vs 24h baseline",
                (
                    q(ttr_p90("15m"), "p90 last 15m"),
                    q(ttr_p90("24h"), "p90 last 24h (baseline)"),
                ),
                "p90 time to resolution of the selected channels from the "
                "cx_ticket_resolution_seconds histogram, as the TTR alerts compute it (the "
                "alerts evaluate each channel separately). Red line: the "
                f"CXTicketResolutionTimeHigh limit ({TTR_HIGH_SECONDS} s); "
                "CXTicketResolutionTimeSpike fires when the 15m line exceeds twice the "
                "baseline.",
                unit="s",
                width=12,
                thresholds=((0, "green"), (TTR_HIGH_SECONDS, "red")),
                threshold_line=True,
            ),
            Panel(
                "First response time",
                (q(cx("cx_first_response_seconds"), "{{channel}} p{{quantile}}"),),
                "Time from ticket.opened to the first agent reply, quantiles per channel, "
                "over $window.",
                unit="s",
            ),
            Panel(
                "Open tickets (backlog)",
                (q(cx("cx_tickets_open", window=False), "{{channel}}"),),
                "Tickets opened or reopened and not resolved, now (not windowed).",
                stack=True,
            ),
            Panel(
                "Tickets resolved / reopened",
                (
                    q(cx("cx_tickets_resolved"), "resolved {{channel}}"),
                    q(cx("cx_tickets_reopened"), "reopened {{channel}}"),
                ),
                "First resolutions (= TTR observations) and reopens in the last $window.",
            ),
        ),
    ),
    Row(
        "SLAs",
        (
            Panel(
                "SLA attainment by priority",
                (q(sla_attainment("kind, priority"), "{{kind}} {{priority}}"),),
                "Share of SLA targets met among those decided in the last $window (met at the "
                "reply / resolution, breached at the due time), per kind and priority, selected "
                "channels. Targets and business hours: CX_SLA_POLICY. CXSlaAttainmentLow fires "
                "below 80% of a kind (1h).",
                unit="percentunit",
                width=12,
                min=0,
                max=1,
            ),
            Panel(
                "SLA attainment by channel",
                (q(cx("cx_sla_attainment_ratio"), "{{channel}} {{kind}}"),),
                "met / (met + breached) per channel and kind over $window.",
                unit="percentunit",
                width=12,
                min=0,
                max=1,
            ),
            Panel(
                "Tickets at risk of breaching",
                (
                    q(f"sum by (kind) ({cx('cx_tickets_at_risk', window=False)})", "all {{kind}}"),
                    q(
                        "sum by (kind) ("
                        + cx("cx_tickets_at_risk_by_priority", 'priority="urgent"', window=False)
                        + ")",
                        "urgent {{kind}}",
                    ),
                ),
                "Open tickets whose SLA due time is within the next hour and not yet passed, "
                f"now, all and urgent. Red line: the CXUrgentTicketsAtRisk limit "
                f"({URGENT_AT_RISK_LIMIT} urgent tickets of a kind).",
                width=12,
                thresholds=((0, "green"), (URGENT_AT_RISK_LIMIT, "red")),
                threshold_line=True,
            ),
            Panel(
                "SLA breaches over time",
                (q(f"sum by (kind, priority) ({cx('cx_sla_breached')})", "{{kind}} {{priority}}"),),
                "SLA targets breached in the last $window (counted at their due times), selected "
                "channels. CXSlaBreachesRising compares the 1h count with the 24h hourly mean.",
                width=12,
                stack=True,
            ),
            Panel(
                "Business vs calendar TTR",
                (
                    q(cx("cx_ttr_seconds", 'quantile="0.9"'), "calendar p90 {{channel}}"),
                    q(cx("cx_ttr_business_seconds", 'quantile="0.9"'), "business p90 {{channel}}"),
                    q(
                        cx("cx_first_response_business_seconds", 'quantile="0.9"'),
                        "business first response p90 {{channel}}",
                    ),
                ),
                "p90 time to resolution over $window in calendar time and counted only inside "
                "business hours (the clock the SLAs use), and business-time first response. "
                "Business series exist only when CX_SLA_POLICY sets business hours.",
                unit="s",
                width=12,
            ),
        ),
    ),
    Row(
        "Carts & checkout",
        (
            Panel(
                "Cart abandonment (selected channels)",
                (
                    q(
                        zero_if_absent(cx("cx_carts", 'outcome="abandoned"'))
                        + " / ("
                        + zero_if_absent(cx("cx_carts", 'outcome="abandoned"'))
                        + " + "
                        + zero_if_absent(cx("cx_carts", 'outcome="converted"'))
                        + ")",
                        "abandonment",
                    ),
                ),
                "abandoned / (abandoned + converted) carts of the selected channels, decided "
                "in the last $window.",
                unit="percentunit",
                kind="stat",
                width=6,
                min=0,
                max=1,
                thresholds=((0, "green"), (0.7, "yellow"), (0.85, "red")),
            ),
            Panel(
                "Cart abandonment by channel",
                (q(cx("cx_cart_abandonment_ratio"), "{{channel}}"),),
                "Abandonment ratio per channel over $window.",
                unit="percentunit",
                width=18,
                min=0,
                max=1,
            ),
            Panel(
                "Carts by outcome",
                (q(f"sum by (outcome) ({cx('cx_carts')})", "{{outcome}}"),),
                "Converted, abandoned and recovered carts in the last $window, selected channels.",
                width=12,
                stack=True,
            ),
            Panel(
                "Checkout abandoned by last step",
                (q(f"sum by (last_step) ({cx('cx_checkout_abandoned')})", "{{last_step}}"),),
                "Abandoned carts that had started checkout, by last completed step (none = "
                "no step), last $window.",
                width=12,
                stack=True,
            ),
        ),
    ),
    Row(
        "Orders",
        (
            Panel(
                "Orders by currency",
                (q(f"sum by (currency) ({cx('cx_orders')})", "{{currency}}"),),
                "Orders placed in the last $window, selected channels.",
            ),
            Panel(
                "Revenue by currency",
                (q(f"sum by (currency) ({cx('cx_revenue')})", "{{currency}}"),),
                "Sum of order totals in the last $window, in each currency.",
                decimals=2,
            ),
            Panel(
                "Average order value by currency",
                (
                    q(
                        f"sum by (currency) ({cx('cx_revenue')}) / "
                        f"sum by (currency) ({cx('cx_orders')})",
                        "{{currency}}",
                    ),
                ),
                "Revenue / orders over the selected channels, last $window.",
                decimals=2,
            ),
            Panel(
                "Average order value by channel",
                (q(cx("cx_order_value_average"), "{{channel}} {{currency}}"),),
                "AOV per channel and currency over $window.",
                decimals=2,
            ),
            Panel(
                "Refunds by currency",
                (
                    q(f"sum by (currency) ({cx('cx_refunds')})", "refunds {{currency}}"),
                    q(
                        f"sum by (currency) ({cx('cx_refunded_amount')})",
                        "amount {{currency}}",
                    ),
                ),
                "Number of refunds and refunded amount in the last $window.",
            ),
            Panel(
                "On-time delivery by channel",
                (q(cx("cx_delivery_on_time_ratio"), "{{channel}}"),),
                "Share of orders delivered by their promised date, over $window.",
                unit="percentunit",
                min=0,
                max=1,
            ),
        ),
    ),
    Row(
        "Pipeline health",
        (
            Panel(
                "Events accepted per second by topic",
                (q(f"sum by (topic) ({cx_rate('cx_events_total')})", "{{topic}}"),),
                "Valid first-seen events per second (whole shop, deduplicated across workers).",
                unit="ops",
                stack=True,
            ),
            Panel(
                "Events rejected per second by reason",
                (
                    q(
                        f"sum by (topic, reason) ({cx_rate('cx_events_rejected_total')})",
                        "{{topic}} {{reason}}",
                    ),
                ),
                "Events written to the dead-letter topic cx.dead-letter (header "
                "cx.error.reason), per source topic and reason.",
                unit="ops",
                stack=True,
            ),
            Panel(
                "Dead-letter ratio (10m)",
                (q(dead_letter_ratio("10m"), "rejected / (accepted + rejected)"),),
                "Share of records rejected over 10 minutes; CXPipelineDeadLetterRateHigh "
                "fires per topic above 5%.",
                unit="percentunit",
                kind="stat",
                min=0,
                max=1,
                decimals=2,
                thresholds=((0, "green"), (DEAD_LETTER_RATIO_LIMIT, "red")),
            ),
            Panel(
                "Duplicate and late events per second",
                (
                    q(
                        f"sum by (topic) ({cx_rate('cx_events_duplicate_total')})",
                        "duplicate {{topic}}",
                    ),
                    q(f"sum by (topic) ({cx_rate('cx_events_late_total')})", "late {{topic}}"),
                ),
                "Duplicates (repeated event_id, ignored) and events older than the longest "
                "window (counted, not aggregated).",
                unit="ops",
            ),
            Panel(
                "Misplaced records per second by topic",
                (
                    q(
                        f"sum by (topic) ({cx_rate('cx_events_misplaced_total')})",
                        "{{topic}}",
                    ),
                ),
                "Records that producers put on another partition than murmur2(key) would "
                "(CRC32, FNV-1a, round-robin or explicit partitions): forwarded to their "
                "canonical partition through <app_id>.repartition-<topic>, so the numbers are "
                "exact, at some extra work. Zero when every producer uses murmur2.",
                unit="ops",
                stack=True,
            ),
            Panel(
                "Consumer lag by topic",
                (
                    q(
                        "sum by (topic) (max by (topic, partition) (cx_pipeline_consumer_lag))",
                        "{{topic}}",
                    ),
                ),
                "Records behind, summed over partitions (each partition counted once even if "
                "two workers report it during a rebalance).",
                stack=True,
            ),
            Panel(
                "Consumer lag by worker",
                (q("sum by (instance) (cx_pipeline_consumer_lag)", "{{instance}}"),),
                "Records behind on the partitions each worker owns.",
            ),
            Panel(
                "Workers: view ready",
                (
                    q("sum(cx_pipeline_view_ready)", "view ready"),
                    q("count(cx_pipeline_view_ready)", "workers reporting"),
                    q("sum(cx_pipeline_broker_connected)", "broker connected"),
                ),
                "Workers whose replicated view has caught up (they export CX metrics only "
                "then), workers scraped, and workers connected to Kafka.",
                decimals=0,
            ),
            Panel(
                "View lag by worker",
                (q("max by (instance) (cx_pipeline_view_lag_seconds)", "{{instance}}"),),
                "How far each worker's replicated view is behind.",
                unit="s",
            ),
            Panel(
                "Cart decisions behind",
                (
                    q(
                        "max by (instance) (cx_pipeline_cart_decisions_behind_seconds)",
                        "{{instance}}",
                    ),
                ),
                "How far cart outcomes trail the clock: a cart is decided only once every order "
                "already in Kafka reached it (about a second; a backfill raises it).",
                unit="s",
            ),
            Panel(
                "Assigned partitions by worker",
                (q("sum by (instance) (cx_pipeline_assigned_partitions)", "{{instance}}"),),
                "Source partitions owned by each worker (rebalances show as steps).",
                stack=True,
                decimals=0,
            ),
            Panel(
                "Checkpoints per second by worker",
                (
                    q(
                        "sum by (instance) (rate(cx_pipeline_checkpoints_total[5m]))",
                        "{{instance}}",
                    ),
                ),
                "Checkpoints written per second by each worker.",
                unit="ops",
            ),
            Panel(
                "Worker CPU",
                (
                    q(
                        "sum by (instance) ("
                        + worker_only("rate(process_cpu_seconds_total[5m])")
                        + ")",
                        "{{instance}}",
                    ),
                ),
                "CPU seconds per second used by each worker process.",
                unit="percentunit",
            ),
            Panel(
                "Worker memory",
                (
                    q(
                        "sum by (instance) (" + worker_only("process_resident_memory_bytes") + ")",
                        "{{instance}}",
                    ),
                ),
                "Resident memory of each worker process.",
                unit="bytes",
            ),
        ),
    ),
    HTTP_INTAKE_ROW,
    SIGNALS_ROW,
)

ANNOTATION_EXPR = 'ALERTS{alertname=~"CX.*", alertstate="firing"}'


# --- public helpers for tests --------------------------------------------------------------
def substitute(expr: str, channel: str = ".*", window: str = DEFAULT_WINDOW) -> str:
    """Replace the template variables the way Grafana does for a Prometheus query.

    ``channel`` is a regex: ``.*`` for All, ``(web|chat)`` for a multi-value selection.
    """
    return expr.replace("$channel", channel).replace("$window", window)


def panel_queries(channel: str | None = None, window: str | None = None) -> list[tuple[str, str]]:
    """Every panel query as ``(panel title, expr)``, in dashboard order.

    Without arguments the expressions keep ``$channel`` and ``$window``; with either argument
    both are substituted (defaults ``.*`` and ``1h``).
    """
    pairs = [
        (panel.title, query.expr) for row in ROWS for panel in row.panels for query in panel.queries
    ]
    if channel is None and window is None:
        return pairs
    return [
        (title, substitute(expr, channel or ".*", window or DEFAULT_WINDOW))
        for title, expr in pairs
    ]


def annotation_queries() -> list[tuple[str, str]]:
    """Queries of the dashboard's annotations (not panels): ``(name, expr)``."""
    return [("CX alerts firing", ANNOTATION_EXPR)]


def panel_titles() -> list[str]:
    return [panel.title for row in ROWS for panel in row.panels]


# --- JSON ------------------------------------------------------------------------------------
def _thresholds(panel: Panel) -> dict:
    steps = [{"color": "green", "value": None}]
    if panel.thresholds:
        steps = [
            {"color": color, "value": None if index == 0 else value}
            for index, (value, color) in enumerate(panel.thresholds)
        ]
    return {"mode": "absolute", "steps": steps}


def _panel_json(panel: Panel, panel_id: int, x: int, y: int, height: int) -> dict:
    defaults: dict = {"unit": panel.unit, "thresholds": _thresholds(panel)}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stack else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if panel.threshold_line else "off"},
        }
        options: dict = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": query.expr,
                "legendFormat": query.legend or "__auto",
                "range": True,
            }
            for index, query in enumerate(panel.queries)
        ],
    }


def _custom_variable(
    name: str, label: str, values: tuple[str, ...], *, multi: bool, current: str
) -> dict:
    variable: dict = {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "multi": multi,
        "includeAll": multi,
        "hide": 0,
        "skipUrlSync": False,
    }
    options = [{"selected": value == current, "text": value, "value": value} for value in values]
    if multi:
        variable["allValue"] = ".*"
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        options.insert(0, {"selected": True, "text": "All", "value": "$__all"})
    else:
        variable["current"] = {"selected": True, "text": current, "value": current}
    variable["options"] = options
    return variable


def build() -> dict:
    """The dashboard as a JSON-ready dict."""
    panels: list[dict] = []
    panel_id = 1
    y = 0
    height = 8
    for row in ROWS:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x = 0
                y += height
            panels.append(_panel_json(panel, panel_id, x, y, height))
            panel_id += 1
            x += panel.width
        y += height
    return {
        "uid": UID,
        "title": TITLE,
        "description": "Customer experience of the shop from cx-pipeline (whole shop; workers "
        "deduplicated). Generated by deploy/grafana/build_dashboard.py: edit that, not this file.",
        "tags": ["cx", "cx-pipeline"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *(
                    {
                        "datasource": DATASOURCE,
                        "enable": True,
                        "expr": expr,
                        "iconColor": "red",
                        "name": name,
                        "step": "60s",
                        "titleFormat": "{{alertname}}",
                        "textFormat": "{{severity}}",
                        "tagKeys": "severity,channel,topic,instance",
                        "useValueForTime": False,
                    }
                    for name, expr in annotation_queries()
                ),
            ]
        },
        "templating": {
            "list": [
                _custom_variable("channel", "Channel", CHANNELS, multi=True, current="$__all"),
                _custom_variable("window", "Window", WINDOWS, multi=False, current=DEFAULT_WINDOW),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
