"""Pure: a scrape's metric families -> the numbers of each section of the demo view.

Sections follow the Grafana dashboard's rows and, like its "all channels" view, add channels
up from exported counts (NPS from response counts, CSAT/CES weighted by responses, AOV as
revenue / orders), so no ratio is ever averaged. Quantiles cannot be merged across channels,
so TTR, first response and on-time delivery show the worst channel and name it, which is also
what the per-channel alerts look at.

To add a section, write a ``(Reading) -> list[Line]`` function and add it with its title to
:data:`SECTIONS`; the renderer and the plain summary pick it up. HTTP intake reads the
collector's families (merged into the same scrape), Signals the demo's own tally of
``cx.signals``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.settings import parse_duration
from pipeline.tools.demo.alert_rules import (
    DEAD_LETTERS,
    TTR_HIGH,
    TTR_SPIKE,
    URGENT_AT_RISK,
    AlertThresholds,
)
from pipeline.tools.demo.scrape import Scrape
from pipeline.tools.demo.signals import SignalTally, describe

Unit = Literal[
    "score", "ratio", "seconds", "count", "rate", "per_minute", "money", "mean", "factor", "flag"
]

COUNTERS = {
    "events": "cx_events_total",
    "rejected": "cx_events_rejected_total",
    "requests": "cx_collector_requests_total",
    "http_accepted": "cx_collector_events_accepted_total",
}
"""Cumulative counters the run loop turns into per-second rates (keys of ``Reading.rates``)."""
PRODUCE_BUCKETS = "cx_collector_produce_seconds_bucket"
BUCKET_KEY = "produce_le="
"""Rate keys of the collector's produce latency buckets (``produce_le=0.005``...), so the p99
is of the recent requests, as ``histogram_quantile(0.99, rate(...))`` would give."""

TREND_KEYS = ("nps", "ttr_p90", "abandonment", "orders_per_min", "events_per_s")
"""Headline numbers with a sparkline; always of the shortest window, the one that moves."""


@dataclass(frozen=True)
class Line:
    """One number of a section; ``alert`` says which alert rule's condition holds on it."""

    label: str
    value: float | None
    unit: Unit
    note: str = ""
    alert: str | None = None
    trend: str | None = None


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[Line, ...]

    @property
    def has_numbers(self) -> bool:
        return any(line.value is not None for line in self.lines)

    @property
    def live(self) -> bool:
        """Its first number is there and something was measured: a value other than a flag or
        a zero count (counters show 0 before anything came)."""
        return self.lines[0].value is not None and any(
            line.value for line in self.lines if line.unit != "flag"
        )


@dataclass(frozen=True)
class Reading:
    """Everything a section builder reads: one scrape, the windows, rates and alert limits."""

    scrape: Scrape
    window: str
    short: str
    long: str
    rates: Mapping[str, float | None] = field(default_factory=dict)
    thresholds: AlertThresholds | None = None
    signals: SignalTally | None = None
    now: float | None = None
    """Wall clock of the scrape (epoch s): ages of signals."""


SectionBuilder = Callable[[Reading], list[Line]]


# -- voice of customer ----------------------------------------------------------------------------
def nps(scrape: Scrape, window: str) -> float | None:
    counts = scrape.by("cx_nps_responses", "category", window=window)
    answered = sum(counts.values())
    if not answered:
        return None
    return 100.0 * (counts.get("promoter", 0.0) - counts.get("detractor", 0.0)) / answered


def survey_weighted(scrape: Scrape, metric: str, survey: str, window: str) -> float | None:
    """A per-channel score weighted by that channel's responses: the whole-shop score, exact."""
    weights = scrape.by("cx_survey_responses", "channel", window=window, survey=survey)
    scores = scrape.by(metric, "channel", window=window)
    total = sum(weights.get(channel, 0.0) for channel in scores)
    if not total:
        return None
    return sum(score * weights.get(channel, 0.0) for channel, score in scores.items()) / total


def voice_of_customer(r: Reading) -> list[Line]:
    responses = r.scrape.by("cx_survey_responses", "survey", window=r.window)
    return [
        Line("NPS", nps(r.scrape, r.window), "score", trend="nps"),
        Line("CSAT", survey_weighted(r.scrape, "cx_csat_ratio", "csat", r.window), "ratio"),
        Line("CES", survey_weighted(r.scrape, "cx_ces_score", "ces", r.window), "mean"),
        Line(
            "survey responses",
            sum(responses.values()) if responses else None,
            "count",
            note=" · ".join(f"{k} {v:,.0f}" for k, v in sorted(responses.items())),
        ),
    ]


# -- support ------------------------------------------------------------------------------------
def worst_channel(scrape: Scrape, name: str, window: str, **match: str) -> tuple[str, float] | None:
    """(channel, value) with the highest value; None when no channel has one."""
    values = scrape.by(name, "channel", window=window, **match)
    return max(values.items(), key=lambda item: item[1]) if values else None


def ttr_p90_by_channel(scrape: Scrape, window: str) -> dict[str, float]:
    return scrape.by("cx_ttr_seconds", "channel", window=window, quantile="0.9")


def ttr_alerts(scrape: Scrape, short: str, long: str, limits: AlertThresholds) -> list[str]:
    """The TTR alert rules whose condition holds now, with their channels.

    Approximated from the demo's own numbers: the rules read a 15-minute rate of the
    cumulative ``cx_ticket_resolution_seconds`` histogram and must hold ``for: 10m``. Here the
    shortest window's p90 stands in for the 15-minute p90, the longest window's p90 is the 24h
    baseline, and the condition counts as soon as it holds. The volume guard is applied to the
    shortest window's own count, unscaled: stricter than 15 minutes' count, on purpose, since a
    p90 of a handful of resolutions is noise (scaling 4 resolutions in 5m up to "12 in 15m"
    flagged quiet channels in a calm demo). Thresholds, factor and guards are the rule file's.
    """
    recent = ttr_p90_by_channel(scrape, short)
    baseline = ttr_p90_by_channel(scrape, long)
    resolved = scrape.by("cx_tickets_resolved", "channel", window=short)
    high, spike = [], []
    for channel, p90 in sorted(recent.items()):
        count = resolved.get(channel, 0.0)
        if p90 > limits.ttr_high_seconds and count >= limits.ttr_high_min_resolutions:
            high.append(channel)
        base = baseline.get(channel)
        if (
            base is not None
            and p90 > limits.ttr_spike_factor * base
            and count >= limits.ttr_spike_min_resolutions
        ):
            spike.append(channel)
    return [
        f"{name}: {', '.join(chs)}" for name, chs in ((TTR_HIGH, high), (TTR_SPIKE, spike)) if chs
    ]


def ttr_vs_baseline(
    scrape: Scrape, short: str, long: str, limits: AlertThresholds | None = None
) -> tuple[str, float] | None:
    """The channel whose recent p90 is the largest multiple of its baseline p90.

    With alert limits, only channels with the spike rule's volume (as in :func:`ttr_alerts`)
    count: a channel with two resolutions is noise, and the rule ignores it too.
    """
    recent, baseline = ttr_p90_by_channel(scrape, short), ttr_p90_by_channel(scrape, long)
    if limits is not None:
        resolved = scrape.by("cx_tickets_resolved", "channel", window=short)
        recent = {
            c: p
            for c, p in recent.items()
            if resolved.get(c, 0.0) >= limits.ttr_spike_min_resolutions
        }
    factors = {c: p / baseline[c] for c, p in recent.items() if baseline.get(c)}
    return max(factors.items(), key=lambda item: item[1]) if factors else None


def _worst_line(
    label: str,
    worst: tuple[str, float] | None,
    unit: Unit,
    *,
    alert: str | None = None,
    trend: str | None = None,
) -> Line:
    value, note = (worst[1], f"worst: {worst[0]}") if worst else (None, "")
    return Line(label, value, unit, note=note, alert=alert, trend=trend)


def support(r: Reading) -> list[Line]:
    s = r.scrape
    alert = "; ".join(ttr_alerts(s, r.short, r.long, r.thresholds) if r.thresholds else []) or None
    p90 = worst_channel(s, "cx_ttr_seconds", r.window, quantile="0.9")
    factor = ttr_vs_baseline(s, r.short, r.long, r.thresholds)
    return [
        _worst_line("TTR p90", p90, "seconds", alert=alert, trend="ttr_p90"),
        _worst_line(f"TTR p90 {r.short} / {r.long}", factor, "factor", alert=alert),
        _worst_line(
            "TTR p50", worst_channel(s, "cx_ttr_seconds", r.window, quantile="0.5"), "seconds"
        ),
        _worst_line(
            "first response p90",
            worst_channel(s, "cx_first_response_seconds", r.window, quantile="0.9"),
            "seconds",
        ),
        Line("resolved", s.total("cx_tickets_resolved", window=r.window), "count"),
        Line("reopened", s.total("cx_tickets_reopened", window=r.window), "count"),
        Line("open tickets (now)", s.total("cx_tickets_open"), "count"),
        *sla_lines(r),
    ]


def sla_lines(r: Reading) -> list[Line]:
    """Worst SLA attainment and urgent tickets at risk, each by kind (first response or
    resolution), the latter highlighted at the CXUrgentTicketsAtRisk rule's threshold."""
    s = r.scrape
    attainment = s.by("cx_sla_attainment_ratio", "kind", window=r.window)
    worst = min(attainment.items(), key=lambda item: item[1]) if attainment else None
    at_risk = s.by("cx_tickets_at_risk_by_priority", "kind", priority="urgent")
    most = max(at_risk.items(), key=lambda item: item[1]) if at_risk else None
    limit = r.thresholds.urgent_at_risk if r.thresholds else None
    alert = (
        f"{URGENT_AT_RISK}: {most[0]}"
        if most is not None and limit is not None and most[1] >= limit
        else None
    )
    return [
        _worst_line("SLA attainment", worst, "ratio"),
        _worst_line("urgent at risk (now)", most, "count", alert=alert),
    ]


# -- carts & checkout -----------------------------------------------------------------------------
OUTCOMES = ("converted", "abandoned", "recovered")


def abandonment(scrape: Scrape, window: str) -> float | None:
    outcomes = scrape.by("cx_carts", "outcome", window=window)
    decided = outcomes.get("abandoned", 0.0) + outcomes.get("converted", 0.0)
    return outcomes.get("abandoned", 0.0) / decided if decided else None


def carts(r: Reading) -> list[Line]:
    outcomes = r.scrape.by("cx_carts", "outcome", window=r.window)
    steps = r.scrape.by("cx_checkout_abandoned", "last_step", window=r.window)
    top_step = max(steps.items(), key=lambda item: item[1])[0] if steps else None
    return [
        Line("abandonment", abandonment(r.scrape, r.window), "ratio", trend="abandonment"),
        *(Line(outcome, outcomes.get(outcome), "count") for outcome in OUTCOMES),
        Line(
            "checkout abandoned",
            sum(steps.values()) if steps else None,
            "count",
            note=f"mostly after: {top_step}" if top_step else "",
        ),
    ]


# -- orders & delivery ----------------------------------------------------------------------------
def orders_per_minute(scrape: Scrape, window: str) -> float | None:
    placed = scrape.total("cx_orders", window=window)
    return None if placed is None else placed / (parse_duration(window) / 60.0)


MAX_CURRENCIES = 3
"""Revenue lines shown, most orders first; the rest are still in the orders count."""


def orders(r: Reading) -> list[Line]:
    s = r.scrape
    counts = s.by("cx_orders", "currency", window=r.window)
    revenue = s.by("cx_revenue", "currency", window=r.window)
    top = sorted(counts, key=lambda currency: -counts[currency])[:MAX_CURRENCIES]
    lines = [
        Line("orders", sum(counts.values()) if counts else None, "count"),
        Line(
            f"orders/min ({r.short})",
            orders_per_minute(s, r.short),
            "per_minute",
            trend="orders_per_min",
        ),
    ]
    for currency in top:
        aov = revenue.get(currency, 0.0) / counts[currency] if counts[currency] else None
        note = f"AOV {aov:,.2f}" if aov is not None else ""
        lines.append(Line(f"revenue {currency}", revenue.get(currency), "money", note=note))
    refunded = s.by("cx_refunded_amount", "currency", window=r.window)
    lines.append(
        Line(
            "refunds",
            s.total("cx_refunds", window=r.window),
            "count",
            note=" · ".join(f"{c} {v:,.2f}" for c, v in sorted(refunded.items())),
        )
    )
    on_time = s.by("cx_delivery_on_time_ratio", "channel", window=r.window)
    worst = min(on_time.items(), key=lambda item: item[1]) if on_time else None
    lines.append(_worst_line("on-time delivery", worst, "ratio"))
    return lines


# -- pipeline health ------------------------------------------------------------------------------
def dead_letter_ratio(rates: Mapping[str, float | None]) -> float | None:
    """rejected / (accepted + rejected) over the rate lookback (the rule uses 10 minutes)."""
    accepted, rejected = rates.get("events"), rates.get("rejected")
    if accepted is None or rejected is None or not accepted + rejected:
        return None
    return rejected / (accepted + rejected)


def pipeline_health(r: Reading) -> list[Line]:
    s = r.scrape
    ratio = dead_letter_ratio(r.rates)
    limit = r.thresholds.dead_letter_ratio if r.thresholds else None
    alert = DEAD_LETTERS if ratio is not None and limit is not None and ratio > limit else None
    return [
        Line("events/s", r.rates.get("events"), "rate", trend="events_per_s"),
        Line(
            "dead letters",
            s.total("cx_events_rejected_total") or 0.0,
            "count",
            note=f"{ratio:.1%} of recent" if ratio is not None else "",
            alert=alert,
        ),
        Line("duplicates", s.total("cx_events_duplicate_total") or 0.0, "count"),
        Line("late", s.total("cx_events_late_total") or 0.0, "count"),
        Line("view lag", s.total("cx_pipeline_view_lag_seconds"), "seconds"),
        Line("consumer lag", s.total("cx_pipeline_consumer_lag") or 0.0, "count"),
        Line(
            "cart decisions behind", s.total("cx_pipeline_cart_decisions_behind_seconds"), "seconds"
        ),
        Line("assigned partitions", s.total("cx_pipeline_assigned_partitions"), "count"),
        Line("broker connected", s.total("cx_pipeline_broker_connected"), "flag"),
        Line("view ready", s.total("cx_pipeline_view_ready"), "flag"),
    ]


# -- HTTP intake ----------------------------------------------------------------------------------
def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: cumulative counts by upper bound ``le``, linear
    within the bucket holding the rank; the ``+Inf`` bucket answers its lower bound."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf or buckets[math.inf] <= 0:
        return None
    rank = q * buckets[math.inf]
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if upper == math.inf:
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return None


def produce_p99(rates: Mapping[str, float | None]) -> float | None:
    recent = {
        float(key.removeprefix(BUCKET_KEY)): value
        for key, value in rates.items()
        if key.startswith(BUCKET_KEY) and value is not None
    }
    return histogram_quantile(0.99, recent)


def http_intake(r: Reading) -> list[Line]:
    """The collector's own registry: what came in over HTTP and how fast Kafka took it."""
    s = r.scrape
    running = s.total("cx_collector_broker_up") is not None

    def count(name: str) -> float | None:
        total = s.total(name)
        return total if total is not None else (0.0 if running else None)

    rejected = s.by("cx_collector_events_rejected_total", "reason")
    refused = s.by("cx_collector_refused_requests_total", "reason")
    accepted_rate = r.rates.get("http_accepted")
    return [
        Line("requests/s", r.rates.get("requests") if running else None, "rate"),
        Line(
            "events accepted",
            count("cx_collector_events_accepted_total"),
            "count",
            note=f"{accepted_rate:,.1f}/s" if accepted_rate is not None else "",
        ),
        Line(
            "events rejected",
            count("cx_collector_events_rejected_total"),
            "count",
            note=" · ".join(f"{k} {v:,.0f}" for k, v in sorted(rejected.items())),
        ),
        Line(
            "requests refused",
            count("cx_collector_refused_requests_total"),
            "count",
            note=" · ".join(f"{k} {v:,.0f}" for k, v in sorted(refused.items())),
        ),
        Line("produce p99", produce_p99(r.rates), "seconds", note="recent requests"),
        Line("broker up", s.total("cx_collector_broker_up"), "flag"),
    ]


# -- signals --------------------------------------------------------------------------------------
def signals(r: Reading) -> list[Line]:
    """Distinct signals per type since the demo started, each with its last few, newest first
    and with their age, in one note: a narrow screen cuts it, keeping the newest."""
    tally = r.signals
    if tally is None:
        return []
    return [
        Line(
            kind,
            float(tally.counts.get(kind, 0)),
            "count",
            note=" · ".join(describe(signal, r.now) for signal in tally.recent.get(kind, ())),
        )
        for kind in tally.types()
    ]


SECTIONS: tuple[tuple[str, SectionBuilder], ...] = (
    ("Voice of customer", voice_of_customer),
    ("Support", support),
    ("Carts & checkout", carts),
    ("Orders & delivery", orders),
    ("Signals", signals),
    ("HTTP intake", http_intake),
    ("Pipeline health", pipeline_health),
)
"""The dashboard's rows, in its order."""


def build_sections(
    reading: Reading, sections: Iterable[tuple[str, SectionBuilder]] = SECTIONS
) -> list[Section]:
    return [Section(title, tuple(build(reading))) for title, build in sections]


def counters(scrape: Scrape) -> dict[str, float]:
    """Current values of :data:`COUNTERS` (0 when absent) and of the produce latency buckets,
    for the rate meter."""
    values = {key: scrape.total(name) or 0.0 for key, name in COUNTERS.items()}
    for le, count in scrape.by(PRODUCE_BUCKETS, "le").items():
        values[BUCKET_KEY + le] = count
    return values


def headline(reading: Reading) -> dict[str, float | None]:
    """The :data:`TREND_KEYS` numbers, of the shortest window (they move within seconds)."""
    s, short = reading.scrape, reading.short
    p90 = worst_channel(s, "cx_ttr_seconds", short, quantile="0.9")
    return {
        "nps": nps(s, short),
        "ttr_p90": p90[1] if p90 else None,
        "abandonment": abandonment(s, short),
        "orders_per_min": orders_per_minute(s, short),
        "events_per_s": reading.rates.get("events"),
    }
