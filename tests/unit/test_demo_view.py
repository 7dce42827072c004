"""The demo view's pure parts: alert thresholds from the rule file, the view model, trends, text."""

from __future__ import annotations

import io
import shlex
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from rich.console import Console

from pipeline.collector import CollectorMetrics
from pipeline.tools.demo.alert_rules import (
    RULE_FILE,
    AlertThresholds,
    RuleShapeError,
    load_thresholds,
    parse_thresholds,
)
from pipeline.tools.demo.intake import curl_example, goes_via_http
from pipeline.tools.demo.render import columns_for, format_seconds, plain_summary, render_view
from pipeline.tools.demo.scrape import Scrape
from pipeline.tools.demo.screen import DemoScreen
from pipeline.tools.demo.signals import RECENT, SignalTally, age, describe
from pipeline.tools.demo.trend import RateMeter, Trends, sparkline
from pipeline.tools.demo.view_model import (
    SECTIONS,
    Line,
    Reading,
    build_sections,
    dead_letter_ratio,
    headline,
    histogram_quantile,
    http_intake,
    pipeline_health,
    signals,
    sla_lines,
    survey_weighted,
    ttr_alerts,
)
from schemas import decode_record

# -- alert thresholds -----------------------------------------------------------------------------
RULES = """
groups:
  - name: g
    rules:
      - alert: CXTicketResolutionTimeHigh
        expr: |
          cx:ttr_seconds_by_channel:p90_15m > 1000
          and on (channel)
          cx:ticket_resolutions_by_channel:increase30m >= 3
      - alert: CXTicketResolutionTimeSpike
        expr: |
          cx:ttr_seconds_by_channel:p90_15m > 1.5 * cx:ttr_seconds_by_channel:p90_24h
          and on (channel)
          cx:ticket_resolutions_by_channel:increase30m >= 7
      - alert: CXPipelineDeadLetterRateHigh
        expr: cx:events_dead_letter_by_topic:ratio_rate10m > 0.2
      - alert: CXUrgentTicketsAtRisk
        expr: cx:tickets_at_risk_by_kind_priority:sum{priority="urgent"} >= 7
"""


def test_thresholds_are_read_from_the_rules_expressions():
    assert parse_thresholds(RULES) == AlertThresholds(
        ttr_high_seconds=1000,
        ttr_high_min_resolutions=3,
        ttr_spike_factor=1.5,
        ttr_spike_min_resolutions=7,
        dead_letter_ratio=0.2,
        urgent_at_risk=7,
    )


def test_the_shipped_rule_file_has_the_shape_the_demo_reads():
    thresholds = load_thresholds()
    text = RULE_FILE.read_text()
    assert f"> {thresholds.ttr_high_seconds:g}" in text
    assert f"> {thresholds.ttr_spike_factor:g} * cx:ttr_seconds_by_channel:p90_24h" in text
    assert f"> {thresholds.dead_letter_ratio:g}" in text
    assert f'{{priority="urgent"}} >= {thresholds.urgent_at_risk:g}' in text


def test_a_missing_or_reshaped_rule_is_named():
    with pytest.raises(RuleShapeError, match="CXPipelineDeadLetterRateHigh"):
        parse_thresholds(RULES.replace("CXPipelineDeadLetterRateHigh", "Renamed"))
    with pytest.raises(RuleShapeError, match="CXTicketResolutionTimeSpike: no factor"):
        parse_thresholds(RULES.replace("1.5 *", ""))


# -- view model -----------------------------------------------------------------------------------
LIMITS = AlertThresholds(
    ttr_high_seconds=1000,
    ttr_high_min_resolutions=5,
    ttr_spike_factor=2,
    ttr_spike_min_resolutions=10,
    dead_letter_ratio=0.05,
    urgent_at_risk=5,
)


def gauge(name: str, labels: list[str], rows: list[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, name, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


def ttr(rows: list[tuple[str, str, str, float]]) -> Metric:
    family = Metric("cx_ttr_seconds", "ttr", "summary")
    for window, channel, quantile, value in rows:
        family.add_sample(
            "cx_ttr_seconds", {"window": window, "channel": channel, "quantile": quantile}, value
        )
    return family


def shop() -> list[Metric]:
    """A hand-made scrape of two channels; the expected numbers are worked out in each test."""
    w = ["window", "channel"]
    events = CounterMetricFamily("cx_events", "", labels=["topic", "event_type"])
    events.add_metric(["cx.orders", "order.placed"], 100)
    return [
        gauge(
            "cx_nps_responses",
            [*w, "category"],
            [
                (["5m", "web", "promoter"], 6),
                (["5m", "web", "passive"], 2),
                (["5m", "web", "detractor"], 2),
                (["5m", "mobile", "promoter"], 1),
                (["5m", "mobile", "detractor"], 3),
                (["1h", "web", "promoter"], 50),
            ],
        ),
        gauge(
            "cx_survey_responses",
            [*w, "survey"],
            [
                (["5m", "web", "nps"], 10),
                (["5m", "mobile", "nps"], 4),
                (["5m", "web", "csat"], 10),
                (["5m", "mobile", "csat"], 30),
            ],
        ),
        gauge("cx_csat_ratio", w, [(["5m", "web"], 0.8), (["5m", "mobile"], 0.5)]),
        gauge(
            "cx_carts",
            [*w, "outcome"],
            [
                (["5m", "web", "abandoned"], 3),
                (["5m", "web", "converted"], 1),
                (["5m", "mobile", "abandoned"], 1),
                (["5m", "mobile", "converted"], 5),
                (["5m", "mobile", "recovered"], 2),
            ],
        ),
        gauge(
            "cx_orders",
            [*w, "currency"],
            [(["5m", "web", "EUR"], 10), (["5m", "web", "USD"], 5), (["1h", "web", "EUR"], 60)],
        ),
        gauge("cx_revenue", [*w, "currency"], [(["5m", "web", "EUR"], 250.0)]),
        gauge("cx_delivery_on_time_ratio", w, [(["5m", "web"], 0.9), (["5m", "mobile"], 0.7)]),
        ttr(
            [
                ("5m", "a", "0.9", 1200),
                ("5m", "b", "0.9", 800),
                ("5m", "c", "0.9", 100),
                ("5m", "d", "0.9", 5000),
                ("24h", "a", "0.9", 500),
                ("24h", "b", "0.9", 300),
                ("24h", "c", "0.9", 90),
                ("24h", "d", "0.9", 100),
            ]
        ),
        gauge(
            "cx_tickets_resolved",
            w,
            [(["5m", "a"], 6), (["5m", "b"], 12), (["5m", "c"], 20), (["5m", "d"], 4)],
        ),
        events,
        gauge("cx_pipeline_view_ready", [], [([], 1)]),
        gauge("cx_pipeline_broker_connected", [], [([], 1)]),
    ]


def reading(**overrides: object) -> Reading:
    base = dict(window="5m", short="5m", long="24h", rates={"events": 50.0}, thresholds=LIMITS)
    return Reading(Scrape(shop()), **{**base, **overrides})  # type: ignore[arg-type]


def lines_of(title: str, r: Reading) -> dict[str, float | None]:
    section = next(s for s in build_sections(r) if s.title == title)
    return {line.label: line.value for line in section.lines}


def test_voice_of_customer_adds_channels_up_from_counts():
    numbers = lines_of("Voice of customer", reading())
    assert numbers["NPS"] == pytest.approx(100 * (7 - 5) / 14)
    assert numbers["CSAT"] == pytest.approx((0.8 * 10 + 0.5 * 30) / 40)
    assert numbers["CES"] is None  # no CES response: no number, not 0
    assert numbers["survey responses"] == 54


def test_carts_orders_and_delivery_numbers():
    carts = lines_of("Carts & checkout", reading())
    assert carts["abandonment"] == pytest.approx(4 / 10)
    assert carts["recovered"] == 2
    orders = lines_of("Orders & delivery", reading())
    assert orders["orders"] == 15
    assert orders["orders/min (5m)"] == pytest.approx(15 / 5)
    assert orders["revenue EUR"] == 250.0
    assert orders["on-time delivery"] == 0.7  # the worst channel
    assert lines_of("Orders & delivery", reading(window="1h"))["orders"] == 60


def test_ttr_alerts_evaluate_the_rule_thresholds_per_channel():
    # a: p90 1200 > 1000 with 6 >= 5 resolutions -> High; 1200 > 2 x 500 but 6 < 10 -> no Spike.
    # b: 800 > 2 x 300 with 12 >= 10 -> Spike; 800 < 1000 -> not High.
    # c: 100 < 2 x 90 -> neither; d: 5000 over both limits but 4 resolutions -> neither.
    alerts = ttr_alerts(Scrape(shop()), "5m", "24h", LIMITS)
    assert alerts == ["CXTicketResolutionTimeHigh: a", "CXTicketResolutionTimeSpike: b"]
    support = next(s for s in build_sections(reading()) if s.title == "Support")
    ttr_line = support.lines[0]
    assert (ttr_line.label, ttr_line.value, ttr_line.note) == ("TTR p90", 5000, "worst: d")
    assert ttr_line.alert == "; ".join(alerts)
    # worst ratio to baseline among channels with the spike rule's volume: b (d is too quiet)
    assert support.lines[1].value == pytest.approx(800 / 300)
    calm = AlertThresholds(5000, 5, 10, 10, 0.05, 5)
    assert ttr_alerts(Scrape(shop()), "5m", "24h", calm) == []


def test_sla_lines_show_the_worst_kind_and_highlight_urgent_at_risk_at_the_rule_limit():
    def sla(urgent_first_response: float) -> list[Line]:
        families = [
            gauge(
                "cx_sla_attainment_ratio",
                ["window", "kind"],
                [(["5m", "first_response"], 0.6), (["5m", "resolution"], 0.9), (["1h", "x"], 0.1)],
            ),
            gauge(
                "cx_tickets_at_risk_by_priority",
                ["kind", "priority"],
                [
                    (["first_response", "urgent"], urgent_first_response),
                    (["resolution", "urgent"], 1),
                    (["first_response", "low"], 40),
                ],
            ),
        ]
        return sla_lines(Reading(Scrape(families), "5m", "5m", "24h", thresholds=LIMITS))

    attainment, at_risk = sla(LIMITS.urgent_at_risk - 1)
    assert (attainment.value, attainment.note) == (0.6, "worst: first_response")
    assert (at_risk.value, at_risk.alert) == (LIMITS.urgent_at_risk - 1, None)
    _, at_risk = sla(LIMITS.urgent_at_risk)
    assert at_risk.alert == "CXUrgentTicketsAtRisk: first_response"


def test_dead_letter_alert_is_strictly_above_the_limit():
    assert dead_letter_ratio({"events": 95.0, "rejected": 5.0}) == pytest.approx(0.05)
    assert dead_letter_ratio({"events": None, "rejected": 5.0}) is None

    def alert(rejected: float) -> str | None:
        r = reading(rates={"events": 100.0 - rejected, "rejected": rejected})
        return next(line for line in pipeline_health(r) if line.label == "dead letters").alert

    assert alert(5.0) is None
    assert alert(6.0) == "CXPipelineDeadLetterRateHigh"


def test_headline_reads_the_shortest_window_whatever_is_selected():
    numbers = headline(reading(window="1h"))
    assert numbers["nps"] == pytest.approx(100 * 2 / 14)
    assert numbers["ttr_p90"] == 5000
    assert numbers["orders_per_min"] == pytest.approx(3.0)
    assert numbers["events_per_s"] == 50.0


def test_an_empty_scrape_has_no_numbers_but_every_section():
    sections = build_sections(Reading(Scrape([]), "5m", "5m", "24h"))
    cx = [s for s in sections if s.title != "Pipeline health"]
    assert [s.title for s in sections][:2] == ["Voice of customer", "Support"]
    assert not any(s.has_numbers for s in cx)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 50)), min_size=1, max_size=6))
def test_weighted_survey_score_equals_the_pooled_ratio(channels):
    """Oracle: pool every channel's responses and divide once."""
    satisfied = [min(s, n) for s, n in channels]
    names = [f"c{i}" for i in range(len(channels))]
    families = [
        gauge(
            "cx_csat_ratio",
            ["window", "channel"],
            [(["5m", c], s / n) for c, s, (_, n) in zip(names, satisfied, channels, strict=True)],
        ),
        gauge(
            "cx_survey_responses",
            ["window", "channel", "survey"],
            [(["5m", c, "csat"], n) for c, (_, n) in zip(names, channels, strict=True)],
        ),
    ]
    pooled = sum(satisfied) / sum(n for _, n in channels)
    assert survey_weighted(Scrape(families), "cx_csat_ratio", "csat", "5m") == pytest.approx(pooled)


# -- trends and text ------------------------------------------------------------------------------
def test_sparkline_scales_between_min_and_max_and_keeps_gaps():
    assert sparkline([0, 7, None, 3.5], 10) == "▁█ ▅"
    assert sparkline([1, 2, 3], 2) == "▁█"  # the last `width` values
    assert sparkline([5, 5], 4) == "▄▄"
    assert sparkline([None], 4) == ""


def test_rate_meter_over_its_lookback():
    meter = RateMeter(lookback=10)
    meter.add(0, {"events": 0})
    assert meter.rates() == {}
    meter.add(5, {"events": 50})
    assert meter.rates() == {"events": 10.0}
    meter.add(20, {"events": 350})  # the point at 0 falls out of the lookback
    assert meter.rates() == {"events": pytest.approx(300 / 15)}
    meter.add(21, {"events": 0})  # a restarted counter: no negative rate
    assert meter.rates()["events"] == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0123, "12ms"),
        (42, "42s"),
        (600, "10.0m"),
        (3 * 3600 + 300, "3h05m"),
        (3 * 86400, "3.0d"),
    ],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_layout_stacks_sections_on_a_narrow_terminal():
    assert [columns_for(w) for w in (80, 139, 150, 220)] == [1, 1, 2, 3]
    sections = build_sections(reading())
    trends = Trends(every=10)
    trends.record(0, {"nps": 1.0})
    trends.record(5, {"nps": 9.0})  # within the sampling period: not kept
    trends.record(10, {"nps": 2.0})
    assert trends.values("nps") == [1.0, 2.0]
    for width in (80, 150):
        console = Console(record=True, width=width, file=io.StringIO())
        console.print(render_view(sections, trends, width=width, header="h", footer="f"))
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        rows_with_titles = [
            line for line in text.splitlines() if "Voice of customer" in line or "Support" in line
        ]
        assert len(rows_with_titles) == (1 if width == 150 else 2)  # side by side vs stacked
        assert "▁█" in text  # the NPS sparkline
        assert "⚠ CXTicketResolutionTimeHigh: a" in text


def test_plain_summary_is_one_line_per_section_and_names_alerts():
    text = plain_summary(build_sections(reading()), "header")
    lines = text.splitlines()
    assert lines[0] == "header" and len(lines) == 1 + len(SECTIONS)
    assert "NPS +14.3" in text and "[ALERT CXTicketResolutionTimeHigh: a" in text
    assert "\x1b" not in text


# -- HTTP intake and signals ----------------------------------------------------------------------
def collector_families(requests: float, buckets: dict[str, float]) -> list[Metric]:
    """The collector's own registry after ``requests`` requests with these produce latencies."""
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    metrics.broker_up.set(1)
    metrics.requests.labels("/v1/events", "200").inc(requests)
    metrics.accepted.labels("carts").inc(40)
    metrics.accepted.labels("orders").inc(2)
    metrics.rejected.labels("missing_field").inc(3)
    for seconds, count in buckets.items():
        for _ in range(int(count)):
            metrics.produce_seconds.observe(float(seconds))
    return list(registry.collect())


def test_histogram_quantile_interpolates_like_prometheus():
    inf = float("inf")
    # 100 observations: 90 <= 0.01, 9 in (0.01, 0.05], 1 above 0.1 -> rank 99 is the 9th of (0.01,
    # 0.05]: 0.01 + 0.04 * 9/9; rank 50 is in the first bucket: 0.01 * 50/90
    buckets = {0.01: 90.0, 0.05: 99.0, 0.1: 99.0, inf: 100.0}
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01 * 50 / 90)
    assert histogram_quantile(0.999, buckets) == 0.1  # in +Inf: its lower bound
    assert histogram_quantile(0.99, {0.01: 0.0, inf: 0.0}) is None
    assert histogram_quantile(0.99, {}) is None


def test_http_intake_reads_the_collectors_registry_and_recent_latency():
    screen = DemoScreen(["5m", "1h"], "5m")
    screen.refresh(collector_families(10, {"0.003": 5}), now=100.0)
    # 10 s later: 30 more requests; the 95 new produce latencies are 94 fast, one slow
    later = collector_families(40, {"0.003": 5 + 94, "0.3": 1})
    intake = next(s for s in screen.refresh(later, now=110.0) if s.title == "HTTP intake")
    numbers = {line.label: line.value for line in intake.lines}
    assert numbers["requests/s"] == pytest.approx(30 / 10)
    assert numbers["events accepted"] == 42
    assert numbers["events rejected"] == 3
    assert numbers["requests refused"] == 0  # the collector runs: none refused, not "no number"
    # recent p99: rank 0.99 * 95 = 94.05 lies past the 94 fast ones, in (0.25, 0.5]
    assert numbers["produce p99"] == pytest.approx(0.25 + 0.25 * (94.05 - 94) / 1)
    assert numbers["broker up"] == 1
    rejected = next(line for line in intake.lines if line.label == "events rejected")
    assert rejected.note == "missing_field 3"


def test_http_intake_without_a_collector_has_no_numbers():
    lines = http_intake(Reading(Scrape([]), "5m", "5m", "24h"))
    assert [line.value for line in lines] == [None] * len(lines)


def signal(signal_type: str, signal_id: str, **fields: object) -> bytes:
    return orjson.dumps(
        {"signal_id": signal_id, "signal_type": signal_type, "occurred_at": "2024-05-01T10:00:05Z"}
        | fields
    )


AT = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC).timestamp()
"""The ``occurred_at`` of :func:`signal`'s signals, as epoch seconds."""


def test_signals_are_counted_once_per_id_with_the_last_few_of_each_type_and_their_age():
    tally = SignalTally()
    tally.add(
        signal(
            "cart.abandoned",
            "a1",
            cart_id="c1",
            items=[{}],
            value="9.99",
            currency="EUR",
            last_step="none",
        )
    )
    tally.add(signal("cart.abandoned", "a1", cart_id="c1"))  # produced again after a crash
    tally.add(
        signal(
            "cart.abandoned",
            "a2",
            cart_id="c2",
            items=[{}, {}],
            value="5",
            currency="EUR",
            last_step="payment",
            occurred_at="2024-05-01T09:58:05Z",
        )
    )
    tally.add(signal("survey.detractor", "s1", survey="nps", score=2, touchpoint="delivery"))
    tally.add(signal("refund.fraud", "x1"))  # a type the demo's shop does not cause
    tally.add(b"not json")
    tally.add(orjson.dumps({"signal_id": "no type"}))
    assert tally.unreadable == 2
    lines = signals(Reading(Scrape([]), "5m", "5m", "24h", signals=tally, now=AT + 12))
    assert [(line.label, line.value) for line in lines] == [
        ("cart.abandoned", 2),
        ("cart.recovered", 0),
        ("survey.detractor", 1),
        ("order.delivery_late", 0),
        ("ticket.sla_breached", 0),
        ("refund.fraud", 1),
    ]
    # newest read first, each with its age (c2 happened 2 minutes earlier but was read last)
    assert lines[0].note == (
        "2m ago c2 2 items 5 EUR, after payment · 12s ago c1 1 items 9.99 EUR, after none"
    )
    assert lines[2].note == "12s ago nps 2 on delivery"
    assert lines[1].note == ""
    assert signals(Reading(Scrape([]), "5m", "5m", "24h")) == []  # no reader: no section numbers


def test_signals_keep_the_last_few_of_a_type_newest_first():
    tally = SignalTally()
    for i in range(RECENT + 2):
        tally.add(signal("order.delivery_late", f"d{i}", order_id=f"o{i}"))
    (line,) = [
        line
        for line in signals(Reading(Scrape([]), "5m", "5m", "24h", signals=tally, now=AT + 7200))
        if line.label == "order.delivery_late"
    ]
    assert line.value == RECENT + 2
    shown = [part.split()[2] for part in line.note.split(" · ")]
    assert shown == [f"o{i}" for i in reversed(range(2, RECENT + 2))]
    assert line.note.startswith("2h ago ")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (119, "119s"), (120, "2m"), (7199, "120m"), (7200, "2h")]
)
def test_signal_age_is_compact(seconds, text):
    assert age({"occurred_at": "2024-05-01T10:00:05Z"}, AT + seconds) == text
    assert age({"occurred_at": "yesterday"}, AT) is None
    assert describe({"signal_type": "x", "signal_id": "i", "occurred_at": "?"}, AT) == "i"


def test_the_split_sends_each_entity_one_way_and_about_the_share():
    keys = [f"cart_{i:016x}" for i in range(20_000)]
    via_http = [key for key in keys if goes_via_http(key, 0.25)]
    assert 0.23 < len(via_http) / len(keys) < 0.27
    assert via_http == [key for key in keys if goes_via_http(key, 0.25)]  # stable
    assert not any(goes_via_http(key, 0.0) for key in keys)
    assert all(goes_via_http(key, 1.0) for key in keys)


def test_curl_example_posts_a_valid_event_with_the_token():
    command = curl_example("http://127.0.0.1:8088", "t0k", now=1_714_557_600.0)
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:3] == ["curl", "-sS", "http://127.0.0.1:8088/v1/events"]
    assert words[words.index("-H") + 1] == "Authorization: Bearer t0k"
    body = orjson.loads(words[words.index("-d") + 1])
    assert body[0]["occurred_at"] == "2024-05-01T10:00:00.000Z"
    event = body[0]
    decoded = decode_record(
        "surveys", event["response_id"].encode(), orjson.dumps(event), now=1_714_557_600.0
    )  # raises EventRejected for an event the collector would dead-letter
    assert (decoded.event_type, decoded.score) == ("survey.submitted", 3)
    assert max(len(line) for line in command.splitlines()) < 80  # no wrapping on a terminal
