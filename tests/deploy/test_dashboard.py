"""The Grafana dashboard: generated JSON up to date, valid PromQL, known and deduplicated metrics."""

import json
import re
import sys

import pytest
import yaml
from deploy_support import DEPLOY, metric_problems, need, run

DASHBOARD_JSON = DEPLOY / "grafana" / "dashboards" / "cx-overview.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "rules" / "cx-alerts.yml"

# Contract gauges without a `window` label.
UNWINDOWED = {"cx_tickets_open", "cx_tickets_at_risk", "cx_tickets_at_risk_by_priority"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))


def content_panels(dashboard: dict) -> list[dict]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


# --- generation -------------------------------------------------------------------------------
def test_json_is_regenerated_identically(dashboard_builder):
    assert dashboard_builder.render() == DASHBOARD_JSON.read_text(encoding="utf-8"), (
        "cx-overview.json is stale: run python deploy/grafana/build_dashboard.py"
    )


def test_generator_check_mode():
    result = run(sys.executable, DEPLOY / "grafana" / "build_dashboard.py", "--check")
    assert result.returncode == 0, result.stderr


def test_generation_is_deterministic(dashboard_builder):
    assert dashboard_builder.render() == dashboard_builder.render()


# --- structure --------------------------------------------------------------------------------
def test_rows(dashboard):
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == [
        "Voice of customer",
        "Support",
        "SLAs",
        "Carts & checkout",
        "Orders",
        "Pipeline health",
        "HTTP intake",
        "Signals & actions",
    ]


def test_every_panel_has_a_query(dashboard):
    panels = content_panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_layout_fits_the_grid(dashboard):
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_panels_use_the_provisioned_datasource(dashboard):
    (datasource,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    for panel in content_panels(dashboard):
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_template_variables(dashboard):
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    channel = variables["channel"]
    assert channel["multi"] and channel["includeAll"]
    assert channel["allValue"] == ".*"
    assert set(channel["query"].split(",")) == {
        "web",
        "mobile_app",
        "store",
        "marketplace",
        "call_center",
        "chat",
        "email",
        "social",
    }
    window = variables["window"]
    assert window["query"].split(",") == ["5m", "1h", "24h"]
    assert not window["multi"]


def test_alert_annotations(dashboard):
    annotations = dashboard["annotations"]["list"]
    assert any(a.get("builtIn") == 1 for a in annotations)
    assert any(a.get("expr", "").startswith("ALERTS{") for a in annotations)


def test_panel_queries_match_json(dashboard, dashboard_builder):
    from_json = [
        (panel["title"], target["expr"])
        for panel in content_panels(dashboard)
        for target in panel["targets"]
    ]
    assert dashboard_builder.panel_queries() == from_json


def test_panel_queries_substitution(dashboard_builder):
    queries = dashboard_builder.panel_queries(channel="(web|chat)", window="5m")
    assert all("$" not in expr for _, expr in queries)
    assert any('channel=~"(web|chat)"' in expr for _, expr in queries)
    assert any('window="5m"' in expr for _, expr in queries)


# --- the queries ------------------------------------------------------------------------------
def all_queries(builder) -> list[tuple[str, str]]:
    return builder.panel_queries() + builder.annotation_queries()


def test_queries_are_valid_promql(dashboard_builder, tmp_path):
    rules = []
    for channel in (".*", "(web|chat)"):
        for title, expr in all_queries(dashboard_builder):
            rules.append(
                {
                    "record": f"dashboard:query_{len(rules)}",
                    "expr": dashboard_builder.substitute(expr, channel=channel, window="1h"),
                    "labels": {"panel": title},
                }
            )
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(need("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_use_known_metrics_and_deduplicate(dashboard_builder, contract_metrics):
    problems = []
    for title, expr in all_queries(dashboard_builder):
        problems += [f"{title}: {problem}" for problem in metric_problems(expr, contract_metrics)]
    assert not problems, "\n".join(problems)


def test_cx_gauges_follow_the_variables(dashboard_builder, contract_metrics):
    gauges = {name for name, kind in contract_metrics.items() if kind == "gauge"}
    problems = []
    for title, expr in dashboard_builder.panel_queries():
        for name, matchers in re.findall(r"\b(cx_[a-z0-9_]+)\{([^}]*)\}", expr):
            if name in gauges:
                if 'channel=~"$channel"' not in matchers:
                    problems.append(f"{title}: {name} ignores $channel")
                if name not in UNWINDOWED and 'window="$window"' not in matchers:
                    problems.append(f"{title}: {name} ignores $window")
    assert not problems, "\n".join(problems)


def test_every_contract_metric_is_on_the_dashboard(dashboard_builder, contract_metrics):
    text = " ".join(expr for _, expr in dashboard_builder.panel_queries())
    missing = [name for name in contract_metrics if not re.search(rf"\b{name}(_bucket)?\b", text)]
    assert not missing, f"contract metrics without a panel: {missing}"


def test_runbooks_name_existing_panels(dashboard_builder):
    titles = set(dashboard_builder.panel_titles())
    rows = {row.title for row in dashboard_builder.ROWS}
    for group in yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            runbook = rule["annotations"]["runbook"]
            for quoted in re.findall(r'"([^"]+)"', runbook):
                assert quoted == dashboard_builder.TITLE or quoted in titles, (
                    f"{rule['alert']} runbook names unknown panel {quoted!r}"
                )
            for row in re.findall(r"row ([A-Z][\w &]+?)[:,(]", runbook):
                assert row.strip() in rows, f"{rule['alert']} runbook names unknown row {row!r}"


# --- the queries compute the right numbers on two identical worker targets ----------------------
def _series(metric: str, value: str, **labels: str) -> list[dict]:
    out = []
    for instance in ("w1:9464", "w2:9464"):
        all_labels = {"job": "cx-worker", "instance": instance, **labels}
        text = ",".join(f'{key}="{val}"' for key, val in all_labels.items())
        out.append({"series": f"{metric}{{{text}}}", "values": value})
    return out


def _gauge(metric: str, value: float | str, window: str = "1h", **labels: str) -> list[dict]:
    values = " ".join([str(value)] * 11) if value == "NaN" else f"{value}x10"
    return _series(metric, values, window=window, **labels)


SYNTHETIC = [
    # NPS counts: web 5/3/2, chat 1/4/5; a 5m window that must be ignored when $window=1h.
    *_gauge("cx_nps_responses", 5, channel="web", category="promoter"),
    *_gauge("cx_nps_responses", 3, channel="web", category="passive"),
    *_gauge("cx_nps_responses", 2, channel="web", category="detractor"),
    *_gauge("cx_nps_responses", 1, channel="chat", category="promoter"),
    *_gauge("cx_nps_responses", 4, channel="chat", category="passive"),
    *_gauge("cx_nps_responses", 5, channel="chat", category="detractor"),
    *_gauge("cx_nps_responses", 100, window="5m", channel="web", category="promoter"),
    # CSAT: web 0.75 of 8, chat 0.5 of 8, email no response (NaN ratio, 0 count).
    *_gauge("cx_csat_ratio", 0.75, channel="web"),
    *_gauge("cx_csat_ratio", 0.5, channel="chat"),
    *_gauge("cx_csat_ratio", "NaN", channel="email"),
    *_gauge("cx_survey_responses", 8, channel="web", survey="csat"),
    *_gauge("cx_survey_responses", 8, channel="chat", survey="csat"),
    *_gauge("cx_survey_responses", 0, channel="email", survey="csat"),
    # CES: web 2 of 4, chat 5 of 4.
    *_gauge("cx_ces_score", 2, channel="web"),
    *_gauge("cx_ces_score", 5, channel="chat"),
    *_gauge("cx_survey_responses", 4, channel="web", survey="ces"),
    *_gauge("cx_survey_responses", 4, channel="chat", survey="ces"),
    # Carts: abandoned 3 + 1, converted 1 + 3, recovered 2 (not in the ratio).
    *_gauge("cx_carts", 3, channel="web", outcome="abandoned"),
    *_gauge("cx_carts", 1, channel="web", outcome="converted"),
    *_gauge("cx_carts", 1, channel="chat", outcome="abandoned"),
    *_gauge("cx_carts", 3, channel="chat", outcome="converted"),
    *_gauge("cx_carts", 2, channel="chat", outcome="recovered"),
    # Orders: EUR 2 orders / 100 on web, 2 / 300 on chat.
    *_gauge("cx_orders", 2, channel="web", currency="EUR"),
    *_gauge("cx_orders", 2, channel="chat", currency="EUR"),
    *_gauge("cx_revenue", 100, channel="web", currency="EUR"),
    *_gauge("cx_revenue", 300, channel="chat", currency="EUR"),
    *_series("cx_tickets_open", "7x10", channel="web"),  # backlog: no window label
    # Events: 3 accepted/s, 1 rejected/s.
    *_series("cx_events_total", "0+180x10", topic="cx.orders", event_type="order.placed"),
    *_series("cx_events_rejected_total", "0+60x10", topic="cx.orders", reason="validation"),
]

# (panel title, channel regex, expected value of its first query)
EXPECTED = [
    ("NPS (selected channels)", ".*", -5),
    ("NPS (selected channels)", "(chat)", -40),
    ("CSAT (selected channels)", ".*", 0.625),
    ("CES (selected channels)", ".*", 3.5),
    ("Cart abandonment (selected channels)", ".*", 0.5),
    ("Cart abandonment (selected channels)", "(web)", 0.75),
    ("Average order value by currency", ".*", 100),
    ("Dead-letter ratio (10m)", ".*", 0.25),
]


def test_compound_queries_on_synthetic_data(dashboard_builder, tmp_path):
    first_query = {}
    for title, expr in dashboard_builder.panel_queries():
        first_query.setdefault(title, expr)
    cases = []
    for title, channel, value in EXPECTED:
        expr = dashboard_builder.substitute(first_query[title], channel=channel, window="1h")
        sample = {"value": value}
        if title == "Average order value by currency":
            sample["labels"] = '{currency="EUR"}'
        cases.append({"expr": expr, "eval_time": "10m", "exp_samples": [sample]})
    # Two identical workers are one copy: the backlog is 7, not 14.
    backlog = dashboard_builder.substitute(first_query["Open tickets (backlog)"])
    cases.append(
        {
            "expr": backlog,
            "eval_time": "10m",
            "exp_samples": [{"labels": '{job="cx-worker",channel="web"}', "value": 7}],
        }
    )
    suite = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": SYNTHETIC, "promql_expr_test": cases}],
    }
    path = tmp_path / "dashboard_test.yml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    result = run(need("promtool"), "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
