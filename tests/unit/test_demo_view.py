"""The demo view's pure parts: alert thresholds from the rule file, the view model, trends, text."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from rich.console import Console

from pipeline.tools.demo.alert_rules import (
    RULE_FILE,
    AlertThresholds,
    RuleShapeError,
    load_thresholds,
    parse_thresholds,
)
from pipeline.tools.demo.render import columns_for, format_seconds, plain_summary, render_view
from pipeline.tools.demo.scrape import Scrape
from pipeline.tools.demo.trend import RateMeter, Trends, sparkline
from pipeline.tools.demo.view_model import (
    Reading,
    build_sections,
    dead_letter_ratio,
    headline,
    pipeline_health,
    survey_weighted,
    ttr_alerts,
)

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
"""


def test_thresholds_are_read_from_the_rules_expressions():
    assert parse_thresholds(RULES) == AlertThresholds(
        ttr_high_seconds=1000,
        ttr_high_min_resolutions=3,
        ttr_spike_factor=1.5,
        ttr_spike_min_resolutions=7,
        dead_letter_ratio=0.2,
    )


def test_the_shipped_rule_file_has_the_shape_the_demo_reads():
    thresholds = load_thresholds()
    text = RULE_FILE.read_text()
    assert f"> {thresholds.ttr_high_seconds:g}" in text
    assert f"> {thresholds.ttr_spike_factor:g} * cx:ttr_seconds_by_channel:p90_24h" in text
    assert f"> {thresholds.dead_letter_ratio:g}" in text


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
    calm = AlertThresholds(5000, 5, 10, 10, 0.05)
    assert ttr_alerts(Scrape(shop()), "5m", "24h", calm) == []


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
    assert lines[0] == "header" and len(lines) == 6
    assert "NPS +14.3" in text and "[ALERT CXTicketResolutionTimeHigh: a" in text
    assert "\x1b" not in text
